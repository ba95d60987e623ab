"""`visionzip`: VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision
Language Models", CVPR 2025), applied frame by frame as video papers use it (HoliTom's video port,
`visionzip/llava_arch.py`, is the reference).

Each frame gets an equal share b of the budget, split as the port splits it: d = floor(b x 54/64)
dominant tokens and c = b - d contextual ones, so every frame that keeps anything keeps at least
one contextual token (b = 1 is one contextual token, b = 64 is 54 + 10).
  dominant:   the d tokens with the highest encoder attention score, kept as they are;
  contextual: of the frame's remaining tokens (in raster order), c targets sampled at a uniform
              stride; every other remaining token joins its most similar target (cosine), and a
              target with members becomes target + the mean of its members (VisionZip's sum, not
              a mean), at the target's position.
Official knob (``STCConfig(options=...)``): dominant_ratio = 54/64. Positions: contiguous (the
port renumbers the compressed sequence).
"""

from __future__ import annotations

import torch

from ..compress import Compressed
from ._common import assemble, even_split, group_mean, ranks_within_rows
from .base import Method

# The paper's split: 54 dominant tokens of every 64.
DOMINANT_RATIO = 54 / 64


def split_frame_budget(b: int, dominant_ratio: float = DOMINANT_RATIO) -> tuple[int, int]:
    """(dominant, contextual) of a frame that keeps b tokens: int(b x ratio) and the rest."""
    dominant = int(b * dominant_ratio)
    return dominant, b - dominant


@torch.no_grad()
def visionzip(
    features: torch.Tensor, scores: torch.Tensor, budget: int, *, dominant_ratio: float = DOMINANT_RATIO
) -> Compressed:
    """Per-frame dominant + contextual tokens, exactly ``budget`` in all.

    features: [S, N, D]; scores: [S, N] encoder attention (higher = more important).
    Frame t keeps even_split(budget, S)[t] tokens, split by `split_frame_budget`.
    """
    s, n, d = features.shape
    device = features.device
    per_frame = even_split(budget, s)
    dominant_list, contextual = zip(*(split_frame_budget(b, dominant_ratio) for b in per_frame))
    dominant = torch.tensor(dominant_list, device=device)

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
    out = assemble(flat, torch.cat(sources), assignment.reshape(s * n))

    # A contextual token is its target PLUS the mean of its other members (VisionZip's rule).
    others = out.assignment.clone()
    others[out.source] = -1
    mean, count = group_mean(flat, others, out.budget)
    summed = count > 0
    out.tokens[summed] = (flat[out.source[summed]].float() + mean[summed]).to(out.tokens.dtype)
    return out


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return visionzip(features, scores, budget, dominant_ratio=options["dominant_ratio"])


METHOD = Method(
    "visionzip",
    "Yang et al., VisionZip: Longer is Better but Not Necessary in Vision Language Models, CVPR 2025 (arXiv 2412.04467)",
    "per frame: dominant tokens by encoder attention + contextual tokens merged by similarity (54:10 split)",
    stage1=_stage1,
    options={"dominant_ratio": DOMINANT_RATIO},
    option_ranges={"dominant_ratio": (0.0, 1.0)},
    positions="contiguous",
)
