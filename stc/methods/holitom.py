"""`holitom`: HoliTom (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large Language
Models", NeurIPS 2025), with the official code's defaults (cokeshao/HoliTom, `holitom/`).

Outer-LLM (stage 1):
  temporal merging: a token is static across frames s..e when the cosine between each pair of
      consecutive frames at its position stays above tau. The video is split into segments by
      dynamic programming to MAXIMISE the number of tokens temporal merging removes over the
      whole video (a segment of L frames removes (L - 1) x its static positions); each static
      position of a segment becomes one "tube", the mean of its L tokens, at its first frame.
  spatial merging: the budget is spread over what is left in proportion to group size (as
      HoliTom rescales its retention ratio); per segment its tubes are clustered into their
      share by density peaks (`density_peaks`, k nearest counting the tube itself, capped at the
      cluster count), every other tube joins its nearest centre, and a centre with members
      becomes beta x centre + (1 - beta) x the mean of its members, at the centre's position;
      per frame its other ("dynamic") tokens keep their share by encoder attention (the
      official D = 0: all dominant).
Inner-LLM (stage 2): at layer K (the depth rule, 18 of 28) keep the 50% of visual tokens the
      last prompt token attends to most; every other one is merged into its most similar kept
      token (mean).
Official knobs (``STCConfig(options=...)``): tau = 0.65 at retention <= 10% and 0.80 above (the
schedule of `scripts/eval_ov-7b_holitom.sh`), beta = 0.6, k = 7. Positions: contiguous. When the
budget exceeds what temporal merging leaves (retention near 100%), the least static tubes are
split back into their tokens until it fits, so the output is always exactly the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..arith import default_inner_layer
from ..compress import Compressed
from ..merge import merge_into_kept
from ._common import apportion, assemble, density_peaks, group_mean, ranks_within_rows
from .base import Method

HOLITOM_TAU = 0.8  # the official tau at 15-25% retention
HOLITOM_LOW_TAU = 0.65  # ... and at its lowest published retention, 10%
HOLITOM_BETA = 0.6  # weight of a cluster's centre against the mean of its other members
HOLITOM_K = 7  # nearest neighbours of the density, the token itself included


def tau_for(retention: float) -> float:
    """The official tau schedule (scripts/eval_ov-7b_holitom.sh): 0.65 at 10% retention, 0.80 at
    15%, 20% and 25%; below 10% the lowest retention's value, between 10% and 15% the next one's."""
    return HOLITOM_LOW_TAU if retention <= 0.10 else HOLITOM_TAU


@dataclass(frozen=True)
class Segments:
    """Temporal merging's plan for a video of S frames x N positions.

    bounds: [(start, end)] inclusive frame ranges covering 0..S-1 in order.
    static: [S_seg, N] bool, positions that are static across each segment (False for 1-frame
            segments).
    """

    bounds: list[tuple[int, int]]
    static: torch.Tensor


@torch.no_grad()
def static_windows(features: torch.Tensor, tau: float = HOLITOM_TAU) -> tuple[Segments, torch.Tensor]:
    """Global redundancy-aware segmentation (HoliTom's temporal merging).

    features: [S, N, D]. Returns (Segments, similarity [S-1, N] fp32 of each position between
    consecutive frames). The partition maximises sum over segments of (len - 1) x #static,
    solved exactly by dynamic programming over the S frames (ties: the shorter last segment).
    """
    s, n, _ = features.shape
    device = features.device
    if s == 1:
        return Segments([(0, 0)], torch.zeros(1, n, dtype=torch.bool, device=device)), features.new_zeros(0, n).float()
    unit = torch.nn.functional.normalize(features.float(), dim=-1)
    similarity = (unit[:-1] * unit[1:]).sum(dim=-1)  # [S-1, N]
    above = (similarity > tau).long()
    # run[t, n]: consecutive transitions above tau starting at transition t.
    run = torch.zeros(s, n, dtype=torch.long, device=device)
    for t in range(s - 2, -1, -1):
        run[t] = (run[t + 1] + 1) * above[t]
    lengths = torch.arange(1, s, device=device)
    # static[a, L-1]: positions static over frames a..a+L (L transitions).
    static_count = (run[:-1, :, None] >= lengths[None, None, :]).sum(dim=1).tolist()  # [S-1][S-1]

    best = [0] * (s + 1)  # best[i]: most tokens removed over frames 0..i-1
    start_of = [0] * s
    for i in range(s):
        best[i + 1], start_of[i] = best[i], i
        for a in range(i - 1, -1, -1):  # segment a..i, shorter first
            gain = best[a] + (i - a) * static_count[a][i - a - 1]
            if gain > best[i + 1]:
                best[i + 1], start_of[i] = gain, a
    bounds = []
    i = s - 1
    while i >= 0:
        bounds.append((start_of[i], i))
        i = start_of[i] - 1
    bounds.reverse()
    static = torch.stack(
        [
            run[a] >= (e - a) if e > a else torch.zeros(n, dtype=torch.bool, device=device)
            for a, e in bounds
        ]
    )
    return Segments(bounds, static), similarity


@torch.no_grad()
def holitom_outer(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    tau: float = HOLITOM_TAU,
    beta: float = HOLITOM_BETA,
    k: int = HOLITOM_K,
) -> Compressed:
    """HoliTom's outer-LLM merging to exactly ``budget`` tokens.

    features: [S, N, D]; scores: [S, N] encoder attention. Static tubes sit at their segment's
    first frame; a cluster of tubes is beta x its centre tube's mean + (1 - beta) x the mean of
    its other tubes' tokens (the centre tube's mean alone when it has none).
    """
    s, n, d = features.shape
    device = features.device
    flat = features.reshape(s * n, d)
    positions = torch.arange(s * n, device=device).view(s, n)
    segments, similarity = static_windows(features, tau)
    static = segments.static.clone()

    # Tubes: (segment, position). If the budget exceeds what is left, split the least static.
    seg_of_tube, pos_of_tube = torch.nonzero(static, as_tuple=True)
    seg_len = torch.tensor([e - a + 1 for a, e in segments.bounds], device=device)
    units = s * n - int((seg_len[seg_of_tube] - 1).sum())
    if budget > units and seg_of_tube.numel():
        starts = torch.tensor([a for a, _ in segments.bounds], device=device)
        # staticness of a tube: its lowest consecutive-frame similarity inside the segment
        frame_offsets = torch.arange(max(seg_len.tolist()) - 1, device=device)
        window = starts[seg_of_tube, None] + frame_offsets[None, :]
        inside = frame_offsets[None, :] < (seg_len[seg_of_tube, None] - 1)
        sims = similarity[window.clamp_max(s - 2), pos_of_tube[:, None]].masked_fill(~inside, float("inf"))
        order = torch.sort(sims.amin(dim=1), stable=True).indices
        gained = torch.cumsum(seg_len[seg_of_tube[order]] - 1, 0)
        split = order[: int(torch.searchsorted(gained, budget - units)) + 1]
        static[seg_of_tube[split], pos_of_tube[split]] = False
        keep_tube = torch.ones(seg_of_tube.numel(), dtype=torch.bool, device=device)
        keep_tube[split] = False
        seg_of_tube, pos_of_tube = seg_of_tube[keep_tube], pos_of_tube[keep_tube]

    # dynamic[t, p]: token (t, p) is not part of a tube.
    seg_index = torch.repeat_interleave(torch.arange(len(segments.bounds), device=device), seg_len)
    dynamic = ~static[seg_index]  # [S, N]
    tubes_per_seg = torch.bincount(seg_of_tube, minlength=len(segments.bounds)).tolist()
    dynamic_per_frame = dynamic.sum(dim=1).tolist()
    sizes = tubes_per_seg + dynamic_per_frame
    counts = apportion(budget, sizes, sizes)
    tube_counts, frame_counts = counts[: len(tubes_per_seg)], counts[len(tubes_per_seg) :]

    # Dynamic tokens: each frame's top-k by attention, kept as they are.
    assignment = torch.full((s * n,), -1, dtype=torch.long, device=device)
    masked = scores.float().masked_fill(~dynamic, float("-inf"))
    keep = dynamic & (ranks_within_rows(masked) < torch.tensor(frame_counts, device=device)[:, None])
    sources = [positions[keep]]
    assignment[sources[0]] = torch.arange(sources[0].numel(), device=device)
    next_slot = sources[0].numel()

    # Static tubes: density peaks over each segment's tube means; the others join the nearest.
    in_centre = torch.zeros(s * n, dtype=torch.bool, device=device)  # tokens of centre tubes
    for g, ((a, e), c) in enumerate(zip(segments.bounds, tube_counts)):
        if c == 0:
            continue
        tube_pos = pos_of_tube[seg_of_tube == g]
        tube_tokens = positions[a : e + 1, tube_pos]  # [L, m] flat indices
        centres, dist = density_peaks(features[a : e + 1, tube_pos].float().mean(dim=0), c, min(k, c))
        centres = torch.sort(centres).values  # nearest-centre ties go to the earlier one, as there
        labels = dist[:, centres].argmin(dim=1)
        labels[centres] = torch.arange(c, device=device)
        assignment[tube_tokens] = (next_slot + labels)[None, :].expand_as(tube_tokens)
        in_centre[tube_tokens[:, centres]] = True
        sources.append(positions[a, tube_pos[centres]])
        next_slot += c
    out = assemble(flat, torch.cat(sources), assignment)

    # beta x centre + (1 - beta) x mean of the other members (HoliTom's merge; its plain mean
    # only under an env flag the evaluation scripts do not set).
    if bool(in_centre.any()):
        centre_slot = torch.where(in_centre, out.assignment, -1)
        other_slot = torch.where(in_centre | (out.assignment < 0), -1, out.assignment)
        centre_mean, centre_count = group_mean(flat, centre_slot, out.budget)
        other_mean, other_count = group_mean(flat, other_slot, out.budget)
        blend = (centre_count > 0) & (other_count > 0)
        out.tokens[blend] = (beta * centre_mean[blend] + (1.0 - beta) * other_mean[blend]).to(out.tokens.dtype)
    return out


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return holitom_outer(features, scores, budget, tau=options["tau"], beta=options["beta"], k=options["k"])


def _inner(config):
    return lambda ctx: merge_into_kept(ctx.visual, ctx.keep_count, ctx.last_attn)


METHOD = Method(
    "holitom",
    "Shao et al., HoliTom: Holistic Token Merging for Fast Video Large Language Models, NeurIPS 2025 (arXiv 2505.21334)",
    "global temporal merging of static tokens + per-segment DPC-kNN / per-frame attention; merging at layer K",
    stage1=_stage1,
    inner=_inner,
    inner_attention="previous",  # layer K-1's attention, as the official code reads it
    default_layer=default_inner_layer,
    uses=("retention", "inner_layer", "inner_keep"),
    options={"tau": HOLITOM_TAU, "beta": HOLITOM_BETA, "k": HOLITOM_K},
    option_ranges={"tau": (0.0, 1.0), "beta": (0.0, 1.0), "k": (1, math.inf)},
    retention_defaults=lambda retention: {"tau": tau_for(retention)},
    positions="contiguous",
)
