"""The arithmetic every layer of stc shares: one rounding rule for token counts, the stage-1
budget, the layer-K depth rule, and the deterministic segment mean behind every merge.

A leaf: it imports nothing of stc, so the algorithm, the methods, the FLOPs convention and the
model adapters can all use it without importing each other.
"""

from __future__ import annotations

import math

import torch

# Rows summed at a time by `segment_mean` on a CPU.
_SUM_ROWS = 1024

__all__ = ["budget_for", "default_inner_layer", "keep_count", "round_half_up", "segment_mean"]


def round_half_up(x: float) -> int:
    """The project's one rounding rule for token counts (Python's round() rounds half to even)."""
    return int(math.floor(x + 0.5))


def budget_for(retention: float, total_tokens: int) -> int:
    """Stage-1 budget B = round(retention * total_tokens) (half up), clamped to [1, total_tokens]."""
    return max(1, min(total_tokens, round_half_up(retention * total_tokens)))


def keep_count(fraction: float, tokens: int) -> int:
    """Tokens kept when keeping ``fraction`` of ``tokens``: round half up, clamped to [1, tokens]."""
    return min(tokens, max(1, round_half_up(fraction * tokens)))


def default_inner_layer(num_layers: int) -> int:
    """Stage 2's layer K for an LLM of ``num_layers`` layers: 18 of 28, scaled (method.md),
    rounded half up like every token count. The one definition of the depth rule."""
    return round_half_up(18 / 28 * num_layers)


def segment_mean(features: torch.Tensor, labels: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of the rows of features [m, D] per label in [0, num_segments) -> [num_segments, D].

    Deterministic on every device: each segment is summed in fp64 in row order (index_add_ on
    CPU, a segmented sum of the rows sorted by label elsewhere; no atomic adds). Every segment
    must be non-empty. Result in features' dtype.
    """
    # (index_add_, not bincount: no host read on a GPU, whose bincount first reads the max label)
    counts = torch.zeros(num_segments, dtype=torch.long, device=labels.device).index_add_(0, labels, torch.ones_like(labels))
    if features.device.type == "cpu":  # index_add_ is sequential (deterministic) on CPU only
        totals = features.new_zeros(num_segments, features.shape[1], dtype=torch.float64)
        # in row order, a block of rows at a time: the same sums, and each block's fp64 copy
        # stays in cache (measured: 3.6 ms against 13.8 for 6,271 x 896 at once)
        for s in range(0, features.shape[0], _SUM_ROWS):
            totals.index_add_(0, labels[s : s + _SUM_ROWS], features[s : s + _SUM_ROWS].double())
    else:
        order = torch.sort(labels, stable=True).indices
        totals = torch.segment_reduce(features[order].double(), "sum", lengths=counts, axis=0)
    return (totals / counts[:, None].double()).to(features.dtype)
