"""Stage 2 of stc: text-aware merging inside the LLM (shared/method.md, "Stage 2").

At decoder layer K the visual tokens are scored by how much the question looks at them
(attention from the text rows) and how close they are to any text token (cosine of hidden
states); the top share is kept and every other visual token is merged into its most similar
kept token. Pure tensor functions; the model adapters call them from a hook.
"""

from __future__ import annotations

import torch

from .arith import segment_mean
from .results import Merged

# The paper's lambda (shared/method.md); STCConfig takes its default from here.
DEFAULT_TEXT_WEIGHT = 0.5


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise to [0, 1]; a constant vector maps to zeros."""
    lo, hi = x.amin(), x.amax()
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


@torch.no_grad()
def text_aware_scores(
    visual: torch.Tensor, text: torch.Tensor, attn: torch.Tensor, text_weight: float = DEFAULT_TEXT_WEIGHT
) -> torch.Tensor:
    """Importance I(v) = (1 - lambda) * A_m(v) + lambda * S_m(v) of every visual token.

    visual: [Nv, D] hidden states of the visual tokens at the input of layer K.
    text:   [Nt, D] hidden states of the text tokens after the video (question + answer prefix).
    attn:   [Nt, Nv] attention of text rows to visual columns at layer K, heads averaged.
    Returns [Nv] fp32 scores in [0, 1].
    A_m = max over text rows of attn, S_m = max over text tokens of cos(h_v, h_t); both min-max
    normalised over the visual tokens.
    """
    if attn.shape != (text.shape[0], visual.shape[0]):
        raise ValueError(f"attn must be [Nt, Nv] = {[text.shape[0], visual.shape[0]]}, got {tuple(attn.shape)}")
    a_m = _minmax(attn.float().amax(dim=0))
    v = torch.nn.functional.normalize(visual.float(), dim=-1)
    t = torch.nn.functional.normalize(text.float(), dim=-1)
    s_m = _minmax((v @ t.T).amax(dim=1))
    return (1.0 - text_weight) * a_m + text_weight * s_m


@torch.no_grad()
def merge_into_kept(visual: torch.Tensor, keep_count: int, scores: torch.Tensor) -> Merged:
    """Keep the ``keep_count`` highest-scoring visual tokens and merge the rest into them.

    visual: [Nv, D] hidden states; scores: [Nv]; 1 <= keep_count (clamped to Nv).
    Every dropped token joins the kept token with the highest cosine similarity (fp32); a kept
    token becomes the mean of itself and its members. Ties in scores go to the lower index.
    """
    nv = visual.shape[0]
    device = visual.device
    keep_count = max(1, min(int(keep_count), nv))
    if keep_count == nv:
        ar = torch.arange(nv, device=device)
        return Merged(visual.clone(), ar, ar.clone())
    top = torch.sort(scores.float(), descending=True, stable=True).indices[:keep_count]
    keep_index = torch.sort(top).values
    slot = torch.full((nv,), -1, dtype=torch.long, device=device)
    slot[keep_index] = torch.arange(keep_count, device=device)
    unit = torch.nn.functional.normalize(visual.float(), dim=-1)
    dropped = torch.nonzero(slot < 0).squeeze(1)
    slot[dropped] = (unit[dropped] @ unit[keep_index].T).argmax(dim=1)
    return Merged(segment_mean(visual, slot, keep_count), keep_index, slot)
