"""`fastv`: FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024).

Nothing happens before the LLM: every visual token enters it. After decoder layer K the visual
tokens the LAST prompt token attends to least are dropped (heads averaged), so layers >= K run
on the kept ones only. That attention is layer K-1's, as the official code reads it from the
previous layer's output weights (layer 0's own at K = 0). The retention counts the tokens that
survive layer K: retention 2% keeps round(2% x T x N) of them. K = 3, as in the stc paper's
FLOPs comparison (FastV at K=3 keeping 2%: 5.5 T on LLaVA-OneVision-7B); the FastV paper's own
default is K=2 with 50% dropped.
"""

from __future__ import annotations

import torch

from ..merge import Merged
from .base import Method, TokenCounts

FASTV_LAYER = 3


@torch.no_grad()
def fastv_keep(visual: torch.Tensor, last_attn: torch.Tensor, keep_count: int) -> Merged:
    """Keep the ``keep_count`` visual tokens with the highest attention from the last prompt token.

    visual: [Nv, D] hidden states at layer K; last_attn: [Nv]; ties go to the lower index.
    The others are dropped (assignment -1), not merged.
    """
    nv = visual.shape[0]
    keep_count = max(1, min(int(keep_count), nv))
    top = torch.sort(last_attn.float(), descending=True, stable=True).indices[:keep_count]
    keep_index = torch.sort(top).values
    assignment = torch.full((nv,), -1, dtype=torch.long, device=visual.device)
    assignment[keep_index] = torch.arange(keep_count, device=visual.device)
    return Merged(visual[keep_index].clone(), keep_index, assignment)


def _inner(config):
    return lambda ctx: fastv_keep(ctx.visual, ctx.last_attn, ctx.keep_count)


def fastv_counts(method, config, total: int) -> TokenCounts:
    """Every token enters the LLM; the retention counts the tokens that survive layer K."""
    return TokenCounts(total, config.budget(total))


def default_layer(num_layers: int) -> int:
    """K = 3 (clamped to the last layer of very shallow test models)."""
    return min(FASTV_LAYER, num_layers - 1)


METHOD = Method(
    "fastv",
    "Chen et al., An Image is Worth 1/2 Tokens After Layer 2, ECCV 2024 (arXiv 2403.06764)",
    "inside the LLM: after layer K keep the visual tokens the last prompt token attends to most",
    inner=_inner,
    inner_attention="previous",
    default_layer=default_layer,
    uses=("retention", "inner_layer"),
    counts_rule=fastv_counts,
)
