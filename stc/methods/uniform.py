"""`uniform`: per-frame spatial pooling to the budget (the naive baseline every paper beats).

The budget is spread as evenly as possible over the frames; each frame's (gh, gw) grid is cut
into that many rectangular regions of (nearly) equal area, and each region becomes one token,
the mean of its patches (area pooling), placed at the region's centre patch. No scores, no
similarity: it shows what compression costs when nothing decides what matters.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..compress import Compressed
from ._common import assemble, even_split
from .base import Method


@lru_cache(maxsize=256)
def pooling_regions(gh: int, gw: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut a gh x gw grid into k rectangles of nearly equal area (0 <= k <= gh*gw).

    Returns (labels [gh*gw] region of every patch in [0, k), or all -1 when k == 0;
    centre [k] flat index of each region's centre patch, strictly increasing). Rows are split
    into ph bands of nearly equal height, ph ~ sqrt(k * gh / gw) so regions are close to
    square; band i is split into k_i column ranges (k_i differ by at most one). On CPU.
    """
    labels = torch.full((gh * gw,), -1, dtype=torch.long)
    if k == 0:
        return labels, torch.empty(0, dtype=torch.long)
    lo, hi = math.ceil(k / gw), min(gh, k)  # every band needs >= 1 row and <= gw regions
    ph = min(hi, max(lo, round(math.sqrt(k * gh / gw))))
    grid = labels.view(gh, gw)
    centre = []
    region = 0
    for i in range(ph):
        r0, r1 = i * gh // ph, (i + 1) * gh // ph
        k_i = (i + 1) * k // ph - i * k // ph
        for j in range(k_i):
            c0, c1 = j * gw // k_i, (j + 1) * gw // k_i
            grid[r0:r1, c0:c1] = region
            centre.append(((r0 + r1 - 1) // 2) * gw + (c0 + c1 - 1) // 2)
            region += 1
    return labels, torch.tensor(centre, dtype=torch.long)


@torch.no_grad()
def uniform_pooling(features: torch.Tensor, scores: torch.Tensor, budget: int, *, grid: tuple[int, int]) -> Compressed:
    """Pool every frame's grid to its share of the budget.

    features: [S, N, D]; scores: [S, N] (unused, checked for shape); grid: (gh, gw), gh*gw == N.
    Frame t gets even_split(budget, S)[t] regions (some frames get none when budget < S).
    Returns exactly ``budget`` tokens in original order.
    """
    s, n, d = features.shape
    gh, gw = grid
    if gh * gw != n:
        raise ValueError(f"grid {grid} does not match N = {n} tokens per frame")
    device = features.device
    labels, sources = [], []
    offset = 0
    for t, k in enumerate(even_split(budget, s)):
        frame_labels, centre = pooling_regions(gh, gw, k)
        labels.append(torch.where(frame_labels >= 0, frame_labels + offset, frame_labels))
        sources.append(centre + t * n)
        offset += k
    assignment = torch.cat(labels).to(device)
    source = torch.cat(sources).to(device)
    return assemble(features.reshape(s * n, d), source, assignment)


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return uniform_pooling(features, scores, budget, grid=grid)


METHOD = Method(
    "uniform",
    "baseline (no paper): uniform per-frame spatial pooling",
    "each frame pooled to an equal share of the budget; a token per region at its centre patch",
    stage1=_stage1,
)
