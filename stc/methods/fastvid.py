"""`fastvid`: FastVID (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large
Language Models", NeurIPS 2025), with the official code's defaults (LunarShen/FastVID, the
LLaVA-OneVision `modeling_qwen2.py`).

DySeg (dynamic temporal segmentation): the transition similarity of frames i and i+1 is the
cosine of their global features; the video is cut at the c - 1 least similar transitions AND at
every transition below tau, so simple videos get few long segments and busy ones many short.
STPrune (density spatiotemporal pruning), with d = the budget's share for density merging:
  ATS: each frame keeps its highest-scoring tokens (encoder attention) as they are, an equal
       share of (1 - d) of the budget per frame;
  DTM: in each segment, every p-th frame counted back from the segment's last frame is an anchor
       frame; the segment's share of d x budget (proportional to its length) is split over them;
       an anchor frame's anchors are its non-ATS tokens of highest density-peak score
       (`density_peaks`, k nearest counting the token itself). For EACH anchor frame, every
       non-ATS token of the segment joins that frame's most similar anchor (cosine), so a token
       feeds one anchor per anchor frame; an anchor becomes w x itself + (1 - w) x the mean of
       its members (itself included), w = max(1 / (members + 1), beta).
Official knobs (``STCConfig(options=...)``): c = 8, tau = 0.9, d = 0.4, p = 4, beta = 0.6,
k = 4. Positions: original. Where an anchor frame cannot hold its share (high retention), the
rest goes to the segment's other frames (which then act as anchor frames too), so the output is
always exactly the budget. A `Compressed` has one slot per input: ``assignment`` records each
merged token's most similar anchor of its segment.
"""

from __future__ import annotations

import math

import torch

from ..compress import Compressed
from ._common import (
    apportion,
    assemble,
    density_peaks,
    even_split,
    group_mean,
    ranks_within_rows,
)
from .base import Method

FASTVID_MIN_SEGMENTS = 8  # c
FASTVID_TAU = 0.9  # transition similarity below which frames are always cut apart
FASTVID_DENSITY_SHARE = 0.4  # d
FASTVID_ANCHOR_STRIDE = 4  # p
FASTVID_ANCHOR_WEIGHT = 0.6  # beta
FASTVID_KNN = 4  # k: nearest distances of the density, the token's own zero included


@torch.no_grad()
def dynamic_segments(
    frame_features: torch.Tensor, min_segments: int = FASTVID_MIN_SEGMENTS, tau: float = FASTVID_TAU
) -> list[int]:
    """DySeg: lengths of the temporally ordered segments (they sum to S).

    frame_features: [S, D] one global feature per frame. Cuts after frame i when transition i
    (cos(f_i, f_{i+1})) is among the ``min_segments - 1`` lowest (ties: earlier first) or below tau.
    """
    s = frame_features.shape[0]
    if s == 1:
        return [1]
    g = torch.nn.functional.normalize(frame_features.float(), dim=-1)
    transition = (g[:-1] * g[1:]).sum(dim=-1)  # [S-1]
    cut = transition < tau
    lowest = torch.sort(transition, stable=True).indices[: max(0, min(min_segments - 1, s - 1))]
    cut[lowest] = True
    ends = torch.cat([torch.nonzero(cut).squeeze(1) + 1, torch.tensor([s], device=cut.device)]).tolist()
    return [b - a for a, b in zip([0] + ends[:-1], ends)]


def _context_counts(total: int, lengths: list[int], spare: list[int], stride: int) -> list[int]:
    """Per-frame DTM anchor counts: segments get ``total`` in proportion to their length; inside
    a segment the anchor frames share it evenly, any overflow goes to the other frames."""
    counts: list[int] = []
    seg_share = apportion(total, lengths, [sum(spare[a : a + n]) for a, n in _spans(lengths)])
    for (start, length), share in zip(_spans(lengths), seg_share):
        room = spare[start : start + length]
        anchor = [int((length - 1 - i) % stride == 0) for i in range(length)]
        anchor_room = [r * a for r, a in zip(room, anchor)]
        first = min(share, sum(anchor_room))
        here = apportion(first, anchor, anchor_room)
        left = [r - h for r, h in zip(room, here)]
        more = apportion(share - first, left, left)
        counts += [h + m for h, m in zip(here, more)]
    return counts


def _spans(lengths: list[int]) -> list[tuple[int, int]]:
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return list(zip(starts, lengths))


@torch.no_grad()
def fastvid(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    min_segments: int = FASTVID_MIN_SEGMENTS,
    tau: float = FASTVID_TAU,
    density_share: float = FASTVID_DENSITY_SHARE,
    anchor_stride: int = FASTVID_ANCHOR_STRIDE,
    anchor_weight: float = FASTVID_ANCHOR_WEIGHT,
    knn_k: int = FASTVID_KNN,
) -> Compressed:
    """DySeg + STPrune to exactly ``budget`` tokens.

    features: [S, N, D]; scores: [S, N] encoder attention. Frame global feature = the mean of its
    tokens. ATS gets budget - floor(density_share * budget) tokens, DTM the rest.
    """
    s, n, d = features.shape
    device = features.device
    flat = features.reshape(s * n, d)
    positions = torch.arange(s * n, device=device).view(s, n)

    lengths = dynamic_segments(features.float().mean(dim=1), min_segments, tau)
    density_total = int(density_share * budget)
    salient = even_split(budget - density_total, s)
    context = _context_counts(density_total, lengths, [n - k for k in salient], anchor_stride)

    # ATS: slots 0..(#salient - 1), each token its own slot.
    is_salient = ranks_within_rows(scores.float()) < torch.tensor(salient, device=device)[:, None]
    assignment = torch.full((s * n,), -1, dtype=torch.long, device=device)
    sources = [positions[is_salient]]
    assignment[sources[0]] = torch.arange(sources[0].numel(), device=device)
    next_slot = sources[0].numel()

    # DTM, one segment at a time.
    unit = torch.nn.functional.normalize(flat.float(), dim=-1)
    anchor_parts, token_parts = [], []
    for start, length in _spans(lengths):
        anchor_frames = [f for f in range(start, start + length) if context[f]]
        if not anchor_frames:
            continue  # this segment's non-ATS tokens are dropped
        members = positions[start : start + length][~is_salient[start : start + length]]
        segment_anchors = []
        for f in anchor_frames:
            candidates = positions[f][~is_salient[f]]
            peaks, _ = density_peaks(flat[candidates], context[f], knn_k)
            anchors = candidates[torch.sort(peaks).values]
            # every non-ATS token of the segment joins one anchor of THIS frame
            label = (unit[members] @ unit[anchors].T).argmax(dim=1)
            mean, count = group_mean(flat[members], label, anchors.numel())
            weight = (1.0 / (count + 1).double()).clamp_min(anchor_weight).float()[:, None]
            tokens = weight * flat[anchors].float() + (1.0 - weight) * mean
            own = label[torch.searchsorted(members, anchors)] == torch.arange(anchors.numel(), device=device)
            alone = (count == 0) | ((count == 1) & own)
            tokens[alone] = flat[anchors[alone]].float()  # only itself: the anchor, bit for bit
            segment_anchors.append(anchors)
            anchor_parts.append(anchors)
            token_parts.append(tokens)
        # one slot per input for `Compressed`: the most similar anchor of the segment
        segment_anchors = torch.cat(segment_anchors)
        nearest = (unit[members] @ unit[segment_anchors].T).argmax(dim=1)
        assignment[members] = next_slot + nearest
        assignment[segment_anchors] = next_slot + torch.arange(segment_anchors.numel(), device=device)
        sources.append(segment_anchors)
        next_slot += segment_anchors.numel()

    out = assemble(flat, torch.cat(sources), assignment)
    if anchor_parts:
        anchors, tokens = torch.cat(anchor_parts), torch.cat(token_parts)
        slots = out.assignment[anchors]
        changed = ~torch.all(tokens == flat[anchors].float(), dim=1)
        out.tokens[slots] = tokens.to(out.tokens.dtype)
        out.selected[slots[changed]] = False
    return out


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return fastvid(features, scores, budget, min_segments=options["c"], tau=options["tau"],
                   density_share=options["d"], anchor_stride=options["p"], anchor_weight=options["beta"],
                   knn_k=options["k"])


METHOD = Method(
    "fastvid",
    "Shen et al., FastVID: Dynamic Density Pruning for Fast Video Large Language Models, NeurIPS 2025 (arXiv 2503.11187)",
    "dynamic temporal segmentation by frame similarity; per segment attention-selected + density-peak anchors",
    stage1=_stage1,
    options={"c": FASTVID_MIN_SEGMENTS, "tau": FASTVID_TAU, "d": FASTVID_DENSITY_SHARE, "p": FASTVID_ANCHOR_STRIDE,
             "beta": FASTVID_ANCHOR_WEIGHT, "k": FASTVID_KNN},
    option_ranges={"c": (1, math.inf), "tau": (-1.0, 1.0), "d": (0.0, 1.0), "p": (1, math.inf), "beta": (0.0, 1.0),
                   "k": (1, math.inf)},
    positions="original",
)
