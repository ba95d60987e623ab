"""`visionzip`: VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision
Language Models", CVPR 2025), applied frame by frame as video papers use it.

Each frame gets an equal share b of the budget, split as the paper splits its image budgets
(64 = 54 dominant + 10 contextual; 128 = 108 + 20; 192 = 162 + 30): c = round(b x 10/64)
contextual tokens and b - c dominant ones.
  dominant:   the b - c tokens with the highest encoder attention score, kept as they are;
  contextual: of the frame's remaining tokens (in raster order), c targets sampled at a uniform
              stride; every other remaining token joins its most similar target (cosine), and
              each target becomes the mean of itself and its members, at the target's position.
Where c is 0 the remaining tokens are dropped.
"""

from __future__ import annotations

import torch

from ..arith import round_half_up
from ..compress import Compressed
from ._common import assemble, even_split, ranks_within_rows
from .base import Method

# The paper's split: 10 contextual tokens of every 64.
CONTEXTUAL_SHARE = 10 / 64


@torch.no_grad()
def visionzip(
    features: torch.Tensor, scores: torch.Tensor, budget: int, *, contextual_share: float = CONTEXTUAL_SHARE
) -> Compressed:
    """Per-frame dominant + contextual tokens, exactly ``budget`` in all.

    features: [S, N, D]; scores: [S, N] encoder attention (higher = more important).
    Frame t gets even_split(budget, S)[t] tokens, round(b * contextual_share) of them contextual.
    """
    s, n, d = features.shape
    device = features.device
    per_frame = even_split(budget, s)
    contextual = [round_half_up(b * contextual_share) for b in per_frame]
    dominant = torch.tensor([b - c for b, c in zip(per_frame, contextual)], device=device)

    ranks = ranks_within_rows(scores.float())
    is_dominant = ranks < dominant[:, None]  # [S, N]
    flat = features.reshape(s * n, d)
    unit = torch.nn.functional.normalize(flat.float(), dim=-1).view(s, n, d)
    positions = torch.arange(s * n, device=device).view(s, n)

    # Slot ids: every frame's dominant tokens first, then every frame's contextual targets.
    assignment = torch.full((s, n), -1, dtype=torch.long, device=device)
    sources = [positions[is_dominant]]
    assignment[is_dominant] = torch.arange(sources[0].numel(), device=device)
    next_slot = sources[0].numel()
    for t, c in enumerate(contextual):
        if c == 0:
            continue
        rest = torch.nonzero(~is_dominant[t]).squeeze(1)  # raster order
        stride = max(1, rest.numel() // c)
        targets = rest[torch.arange(0, rest.numel(), stride, device=device)[:c]]
        nearest = (unit[t, rest] @ unit[t, targets].T).argmax(dim=1)
        slots = next_slot + nearest
        slots[torch.searchsorted(rest, targets)] = next_slot + torch.arange(c, device=device)
        assignment[t, rest] = slots
        sources.append(positions[t, targets])
        next_slot += c
    return assemble(flat, torch.cat(sources), assignment.reshape(s * n))


def _stage1(features, scores, budget, *, grid, config) -> Compressed:
    return visionzip(features, scores, budget)


METHOD = Method(
    "visionzip",
    "Yang et al., VisionZip: Longer is Better but Not Necessary in Vision Language Models, CVPR 2025 (arXiv 2412.04467)",
    "per frame: dominant tokens by encoder attention + contextual tokens merged by similarity (54:10 split)",
    stage1=_stage1,
)
