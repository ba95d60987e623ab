"""`evs`: Efficient Video Sampling (Bagrov et al., "Efficient Video Sampling: Pruning Temporally
Redundant Tokens for Faster VLM Inference", NVIDIA, arXiv 2510.14624), the pruner vLLM enables
for Qwen-family models with ``video_pruning_rate``.

A token is worth keeping when its spatial position changed since the previous frame: its score
is 1 - cos(token, the token at the same position one frame earlier). The first frame has no
predecessor and is always kept whole; the rest of the budget goes to the most dissimilar tokens
of the later frames, over the whole video at once (ties to the lower index). Dropped tokens are
dropped, not merged, and kept tokens keep their original positions ("positions preserve their
identity", as the paper puts it; vLLM gives them their original mRoPE t/h/w).

Read: the paper's abstract and method description, and vLLM's ``compute_retention_mask`` /
``compute_retained_tokens_count`` (``vllm/multimodal/video_prune/evs.py``); this is a
reimplementation, no code is copied. Choices of ours: the budget is the caller's exact count
(vLLM computes int((1 - q) x total) and never goes below one frame); when the budget is smaller
than one frame, EVS's ranking has nothing to say (every first-frame token ties), so the kept
tokens are the first frame's tokens at the centre patches of ``budget`` near-equal regions of
its grid (`uniform.pooling_regions`), spread over the picture instead of the top rows that a
raster-order tie break would give. Cosines are computed in float32.
"""

from __future__ import annotations

import torch

from ..compress import Compressed
from ._common import assemble
from .base import Method
from .uniform import pooling_regions


@torch.no_grad()
def temporal_dissimilarity(features: torch.Tensor) -> torch.Tensor:
    """[S, N, D] -> [S-1, N] float32: 1 - cos(features[t, i], features[t-1, i]) for t >= 1.

    A zero vector has cosine 0 with everything (dissimilarity 1)."""
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    return 1.0 - (unit[1:] * unit[:-1]).sum(dim=-1)


@torch.no_grad()
def evs_keep(features: torch.Tensor, budget: int, *, grid: tuple[int, int]) -> torch.Tensor:
    """Flat indices [budget] (into S*N, increasing) of the tokens EVS keeps.

    features: [S, N, D]; grid: (gh, gw) with gh*gw == N; 1 <= budget <= S*N.
    budget >= N: all of frame 0, then the budget - N most dissimilar later tokens (ties: lower
    flat index). budget < N: frame 0's tokens at the centres of ``budget`` near-equal regions.
    """
    n = features.shape[1]
    device = features.device
    if budget < n:
        gh, gw = grid
        if gh * gw != n:
            raise ValueError(f"grid {grid} does not match N = {n} tokens per frame")
        return pooling_regions(gh, gw, budget)[1].to(device)
    later = temporal_dissimilarity(features).reshape(-1)  # [(S-1) * N], flat index - N
    order = torch.sort(later, descending=True, stable=True).indices[: budget - n]
    return torch.cat([torch.arange(n, device=device), torch.sort(order).values + n])


@torch.no_grad()
def evs(features: torch.Tensor, scores: torch.Tensor, budget: int, *, grid: tuple[int, int]) -> Compressed:
    """Keep ``budget`` tokens by temporal change; the others are dropped.

    features: [S, N, D]; scores: [S, N] (unused: EVS needs no attention, checked for shape).
    Returns exactly ``budget`` tokens in original order, every one `selected` (copied as is).
    """
    s, n, d = features.shape
    keep = evs_keep(features, budget, grid=grid)
    assignment = torch.full((s * n,), -1, dtype=torch.long, device=features.device)
    assignment[keep] = torch.arange(budget, device=features.device)
    return assemble(features.reshape(s * n, d), keep, assignment)


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return evs(features, scores, budget, grid=grid)


METHOD = Method(
    "evs",
    "Bagrov et al., Efficient Video Sampling: Pruning Temporally Redundant Tokens for Faster VLM Inference, "
    "2025 (arXiv 2510.14624); vLLM's video_pruning_method='evs'",
    "first frame whole, then the tokens most changed since the same position in the previous frame "
    "(the rest dropped, not merged)",
    stage1=_stage1,
    positions="original",
)
