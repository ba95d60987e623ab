"""`random`: keep a uniformly random subset of the visual tokens (the floor any method must beat).

Seeded (seed 0 unless told otherwise) so the same video and budget always keep the same tokens,
on every device: the permutation is drawn on the CPU with its own generator, never from the
global random state.
"""

from __future__ import annotations

import torch

from ..compress import Compressed
from ._common import assemble
from .base import Method

RANDOM_SEED = 0


@torch.no_grad()
def random_tokens(features: torch.Tensor, scores: torch.Tensor, budget: int, *, seed: int = RANDOM_SEED) -> Compressed:
    """Keep ``budget`` tokens drawn uniformly without replacement; the rest are dropped.

    features: [S, N, D]; scores: [S, N] (unused, checked for shape). Deterministic given seed.
    """
    s, n, d = features.shape
    generator = torch.Generator(device="cpu").manual_seed(seed)
    keep = torch.randperm(s * n, generator=generator)[:budget].to(features.device)
    assignment = torch.full((s * n,), -1, dtype=torch.long, device=features.device)
    assignment[keep] = torch.arange(budget, device=features.device)
    return assemble(features.reshape(s * n, d), keep, assignment)


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return random_tokens(features, scores, budget)


METHOD = Method(
    "random",
    "baseline (no paper): uniform random token subset",
    f"a seeded (seed {RANDOM_SEED}) uniformly random subset of all tokens",
    stage1=_stage1,
)
