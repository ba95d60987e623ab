"""`flashvid`: FlashVID (Fan et al., "FlashVID: Efficient Video Large Language Models via
Training-free Tree-based Spatiotemporal Token Merging", ICLR 2026, arXiv 2602.08024), ported from
the official code (Fanziyang-v/FlashVID: ``flashvid/utils.py``, ``token_selection.py``,
``configuration_flashvid.py``, the ``flashvid()`` wrapper and ``scripts/llava_ov.sh``); no code
is copied.

Outer-LLM (stage 1), per segment of the video:
  DySeg: frames are cut apart where the cosine of consecutive frames' mean tokens is below the
      segment threshold (0.9); when that gives fewer than ``min_segments`` (8) segments, the
      lowest remaining transitions are cut too.
  Budget: every frame gets the same share b of the budget; ADTS takes ceil(b x alpha) of it
      (alpha = 0.7), TSTM the rest, pooled per segment.
  ADTS (attention and diversity-based token selection), per frame: greedy max-min diversity
      over the distance (1 - cos(i, j)) x w_j, where w_j calibrates candidate j by its encoder
      attention ("attn_div") and, in "attn_div_v2" (the default of the official ``flashvid()``
      and its LLaVA scripts), also by its dot product with the segment's mean token. The first
      pick maximises the second-smallest entry of its column (its calibrated distance to its
      nearest other token); each next pick maximises its calibrated distance to the nearest
      pick. Picked tokens are kept as they are.
  TSTM (tree-based spatiotemporal token merging): every other token of frame t >= 1 links to
      its most similar other token (cosine) in frame t-1, anywhere in the frame, when that
      cosine exceeds the temporal threshold (0.8); links form redundancy trees rooted in the
      earliest frame of each. A tree becomes one token at its root: the sum of its tokens
      divided by 1 + the root's direct children (the official arithmetic, a plain mean only
      for trees of depth <= 1; ``tree_mean=True`` gives the plain mean). When the roots are
      fewer than the segment's TSTM budget, only the most similar links are kept.
  Spatial merging: each frame's roots get a share of the segment's TSTM budget in proportion
      to their number; DPC-kNN (`density_peaks`, k = min(7, share), the token itself counted)
      picks that many centres, every root joins its nearest centre, and a cluster is the mean of
      its roots' tree tokens at its centre's position.
Inner-LLM (stage 2): at layer K = round(20/28 x layers) (official: layer 20 of 28) keep the
      ``llm_retention`` (0.3) of the visual tokens the last prompt token attends to most, in
      layer K-1's attention (as FastV's official code reads it); the rest are dropped.

Retention counts the tokens that ENTER the LLM, as for every stage-1 method here: retention r
puts round(r x T x N) tokens into the LLM and round(0.3 x that) stay after layer K. (The
official ``retention_ratio`` is an average over the LLM's layers: its vision side keeps
``expansion`` = 1.25 x r, so the official 10% is ``STCConfig(method="flashvid",
retention=0.125)`` here.) ``inner_keep = 1.0`` turns the layer-K pruning off, as for every
method; otherwise the fraction kept there is the option ``llm_retention``.
Positions: contiguous, as the official LLaVA-OneVision code builds the sequence from the
compressed tokens (its Qwen2.5-VL code keeps original mRoPE positions: force that with
``positions="original"``; its Qwen2.5-VL scripts also use ``selection="attn_div"`` and
``min_segments=4``). Where the port differs from the official code is listed in docs/method.md.
"""

from __future__ import annotations

import math

import torch

from ..arith import keep_count, round_half_up
from ..compress import Compressed
from ._common import apportion, assemble, density_peaks, even_split, group_mean
from .base import Method, TokenCounts
from .fastv import fastv_keep

ALPHA = 0.7  # share of a frame's budget that ADTS selects
TEMPORAL_THRESHOLD = 0.8  # cosine above which a token joins its parent in the previous frame
SEGMENT_THRESHOLD = 0.9  # DySeg: consecutive frames less similar than this are cut apart
MIN_SEGMENTS = 8  # DySeg: at least this many segments (LLaVA scripts; Qwen2.5-VL's use 4)
SELECTION = "attn_div_v2"  # ADTS calibration (flashvid() default and LLaVA scripts)
SELECTIONS = ("attn_div", "attn_div_v2")
DPC_K = 7  # nearest neighbours of the DPC-kNN density (self included), capped at the cluster count
PRUNING_LAYER, REFERENCE_LAYERS = 20, 28  # official layer K of a 28-layer LLM
LLM_RETENTION = 0.3  # share of the visual tokens kept after layer K

# Elements of one [frames, N, N] chunk of ADTS distances (fp32): 16M -> 64 MiB.
_CHUNK_ELEMENTS = 1 << 24


@torch.no_grad()
def segment_lengths(
    frame_features: torch.Tensor, threshold: float = SEGMENT_THRESHOLD, min_segments: int = MIN_SEGMENTS
) -> list[int]:
    """DySeg: lengths of the temporally ordered segments (they sum to S).

    frame_features: [S, D], one feature per frame (the mean of its tokens). Cuts after frame i
    where cos(f_i, f_{i+1}) < threshold; if that makes fewer than ``min_segments`` segments, the
    lowest of the other transitions are cut too (ties: the earlier), as many as exist.
    """
    s = frame_features.shape[0]
    if s == 1:
        return [1]
    g = torch.nn.functional.normalize(frame_features.float(), dim=-1)
    transition = (g[:-1] * g[1:]).sum(dim=-1)  # [S-1]
    cut = transition < threshold
    missing = min(min_segments - 1 - int(cut.sum()), int((~cut).sum()))
    if missing > 0:
        rest = transition.masked_fill(cut, math.inf)
        cut[torch.sort(rest, stable=True).indices[:missing]] = True
    ends = (torch.nonzero(cut).squeeze(1) + 1).tolist() + [s]
    return [b - a for a, b in zip([0] + ends[:-1], ends)]


@torch.no_grad()
def adts(features: torch.Tensor, scores: torch.Tensor, counts: list[int], selection: str = SELECTION) -> torch.Tensor:
    """Attention and diversity-based token selection over one segment.

    features: [F, N, D]; scores: [F, N] encoder attention; counts: tokens to pick per frame.
    Returns picked [F, N] bool, exactly counts[f] per frame.

    dist[i, j] = (1 - cos(x_i, x_j)) x w_j per frame, w = scores ("attn_div"), or scores times
    each token's dot product with the segment's mean token ("attn_div_v2"). First pick: the j
    whose column has the largest second-smallest entry; then repeatedly the j with the largest
    min over picks k of dist[k, j] (ties: the lower index), never a token already picked.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    f, n, _ = features.shape
    device = features.device
    x = features.float()
    weight = scores.float()
    if selection == "attn_div_v2":
        weight = weight * (x @ x.mean(dim=(0, 1)))  # event relevance: <x_j, mean token of the segment>
    picked = torch.zeros(f, n, dtype=torch.bool, device=device)
    want = torch.tensor(counts, device=device)
    frames = max(1, _CHUNK_ELEMENTS // max(1, n * n))
    for a in range(0, f, frames):
        unit = torch.nn.functional.normalize(x[a : a + frames], dim=-1)
        dist = (1.0 - unit @ unit.transpose(1, 2)) * weight[a : a + frames, None, :]  # [F', N, N]
        rows = torch.arange(dist.shape[0], device=device)
        need = want[a : a + frames]
        if n >= 2:
            first = torch.kthvalue(dist, 2, dim=1).values.argmax(dim=1)
        else:
            first = torch.zeros(dist.shape[0], dtype=torch.long, device=device)
        chosen = torch.zeros(dist.shape[0], n, dtype=torch.bool, device=device)
        chosen[rows, first] = need > 0
        nearest = dist[rows, first]  # [F', N]: calibrated distance to the nearest pick
        for i in range(1, int(need.max()) if need.numel() else 0):
            pick = nearest.masked_fill(chosen, -math.inf).argmax(dim=1)
            active = need > i
            chosen[rows[active], pick[active]] = True
            nearest = torch.minimum(nearest, dist[rows, pick])
        picked[a : a + frames] = chosen
    return picked


@torch.no_grad()
def redundancy_trees(
    features: torch.Tensor, picked: torch.Tensor, threshold: float, roots_needed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """TSTM's trees over one segment of F >= 1 frames.

    features: [F, N, D]; picked: [F, N] ADTS tokens (never part of a tree); roots_needed: the
    segment's TSTM budget (<= the unpicked tokens).
    Returns (root [F, N] long: the segment-flat index of each unpicked token's root, -1 for
    picked ones; children [F * N] long: each root's direct children).

    A token of frame t >= 1 links to argmax_j cos(x, x_{t-1, j}) over the unpicked j (ties: the
    lower j) when that cosine exceeds ``threshold``. If fewer than ``roots_needed`` tokens stay
    unlinked, only the most similar links are kept (ties: the earlier token), so that exactly
    ``roots_needed`` are roots.
    """
    f, n, _ = features.shape
    device = features.device
    root = torch.arange(f * n, device=device).view(f, n)
    children = torch.zeros(f * n, dtype=torch.long, device=device)
    free = ~picked
    if f > 1:
        unit = torch.nn.functional.normalize(features.float(), dim=-1)
        sims = unit[1:] @ unit[:-1].transpose(1, 2)  # [F-1, N, N]: frame t's tokens x frame t-1's
        sims.masked_fill_(~free[:-1, None, :], -math.inf)
        parent = sims.argmax(dim=2)  # [F-1, N]
        best = sims.gather(2, parent[..., None]).squeeze(2)
        link = free[1:] & (best > threshold)
        surplus = int(free.sum()) - roots_needed  # links that may be kept
        if int(link.sum()) > surplus:
            strength = best.masked_fill(~link, -math.inf).reshape(-1)
            keep = torch.sort(strength, descending=True, stable=True).indices[: max(0, surplus)]
            link = torch.zeros_like(link).reshape(-1)
            link[keep] = True
            link = link.view(f - 1, n)
        for t in range(1, f):
            root[t] = torch.where(link[t - 1], root[t - 1][parent[t - 1]], root[t])
        parent_flat = (torch.arange(f - 1, device=device)[:, None] * n + parent)[link]
        children = torch.bincount(parent_flat, minlength=f * n)
    return root.masked_fill(picked, -1), children


def split_budget(budget: int, frames: int, alpha: float = ALPHA) -> tuple[list[int], list[int]]:
    """(share per frame, ADTS picks per frame): the budget spread evenly over the frames (counts
    differ by at most one), and min(b, ceil(b x alpha)) of a frame's share b for ADTS (the
    official ceil: 25 x 0.7 -> 18)."""
    share = even_split(budget, frames)
    return share, [min(b, math.ceil(b * alpha)) for b in share]


def cluster_counts(total: int, roots: list[int]) -> list[int]:
    """The segment's TSTM budget split over its frames in proportion to their roots (the
    official ceil(roots x total / all roots) per frame, made exact): every frame with a root
    gets one cluster first while the budget allows, the rest goes by largest remainder, never
    more than a frame's roots. A frame left without a cluster (budget below the frames with
    roots) drops its trees."""
    floor = [1 if r > 0 else 0 for r in roots]
    if sum(floor) > total:
        return apportion(total, roots, roots)
    more = apportion(total - sum(floor), roots, [r - f for r, f in zip(roots, floor)])
    return [f + m for f, m in zip(floor, more)]


@torch.no_grad()
def flashvid_outer(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    alpha: float = ALPHA,
    temporal_threshold: float = TEMPORAL_THRESHOLD,
    segment_threshold: float = SEGMENT_THRESHOLD,
    min_segments: int = MIN_SEGMENTS,
    selection: str = SELECTION,
    k: int = DPC_K,
    tree_mean: bool = False,
) -> Compressed:
    """FlashVID's vision-side compression (DySeg, ADTS, TSTM, spatial DPC-kNN) to exactly
    ``budget`` tokens, in original order.

    features: [S, N, D] projected tokens; scores: [S, N] encoder attention; 1 <= budget < S*N.
    The budget is split evenly over the frames (counts differ by at most one); frame f's share
    b_f gives ADTS min(b_f, ceil(b_f x alpha)) and TSTM the rest (pooled per segment).
    """
    s, n, d = features.shape
    device = features.device
    flat = features.reshape(s * n, d)
    lengths = segment_lengths(features.float().mean(dim=1), segment_threshold, min_segments)
    share, picks = split_budget(budget, s, alpha)

    sources, assignment = [], torch.full((s * n,), -1, dtype=torch.long, device=device)
    merged_slots, merged_values = [], []
    next_slot, start = 0, 0
    for length in lengths:
        frames = slice(start, start + length)
        offset = start * n  # segment-flat index -> video-flat index
        picked = adts(features[frames], scores[frames], picks[frames], selection)
        kept = torch.nonzero(picked.reshape(-1)).squeeze(1) + offset
        assignment[kept] = next_slot + torch.arange(kept.numel(), device=device)
        sources.append(kept)
        next_slot += kept.numel()

        tstm = sum(share[frames]) - sum(picks[frames])
        if tstm > 0:
            root, children = redundancy_trees(features[frames], picked, temporal_threshold, tstm)
            members = torch.nonzero(root.reshape(-1) >= 0).squeeze(1)
            tree_of = root.reshape(-1)[members]
            roots = torch.unique(tree_of)  # ascending: frame by frame
            label = torch.searchsorted(roots, tree_of)
            mean, size = group_mean(flat[members + offset], label, roots.numel())
            value = mean if tree_mean else mean * (size / (1 + children[roots]))[:, None].float()
            frame_of = roots // n
            clusters = cluster_counts(tstm, torch.bincount(frame_of, minlength=length).tolist())
            cluster_of = torch.full((roots.numel(),), -1, dtype=torch.long, device=device)  # -1: dropped
            centres = []
            for t, c in enumerate(clusters):
                mine = torch.nonzero(frame_of == t).squeeze(1)
                if c == mine.numel():
                    cluster_of[mine] = next_slot + torch.arange(c, device=device)
                    centres.append(mine)
                elif c > 0:
                    peaks, dist = density_peaks(value[mine], c, min(c, k))
                    lab = dist[:, peaks].argmin(dim=1)  # ties: the higher-scoring centre
                    lab[peaks] = torch.arange(c, device=device)
                    cluster_of[mine] = next_slot + lab
                    centres.append(mine[peaks])
                else:
                    continue
                next_slot += c
            centres = torch.cat(centres)
            sources.append(roots[centres] + offset)
            assignment[members + offset] = cluster_of[label]
            local = torch.where(cluster_of >= 0, cluster_of - (next_slot - tstm), -1)
            slot_value, _ = group_mean(value, local, tstm)
            merged_slots.append(torch.arange(next_slot - tstm, next_slot, device=device))
            merged_values.append(slot_value)
        start += length

    out = assemble(flat, torch.cat(sources), assignment)
    if merged_slots:
        # assemble() sorted the slots into original order: map pre-sort slot ids through a member
        slots = torch.cat(merged_slots)
        values = torch.cat(merged_values)
        pre_sort_source = torch.cat(sources)
        final = out.assignment[pre_sort_source[slots]]
        rewrite = ~out.selected[final]
        out.tokens[final[rewrite]] = values[rewrite].to(out.tokens.dtype)
    return out


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return flashvid_outer(
        features, scores, budget, alpha=options["alpha"], temporal_threshold=options["temporal_threshold"],
        segment_threshold=options["segment_threshold"], min_segments=options["min_segments"],
        selection=options["selection"], k=options["k"], tree_mean=options["tree_mean"],
    )


def _inner(config):
    return lambda ctx: fastv_keep(ctx.visual, ctx.last_attn, ctx.keep_count)


def flashvid_counts(method, config, total: int) -> TokenCounts:
    """round(retention x total) tokens enter the LLM; round(llm_retention x that) stay after
    layer K (all of them with ``inner_keep = 1.0``, every method's switch for stage 2)."""
    first = config.budget(total)
    if config.inner_keep >= 1.0:
        return TokenCounts(first, first)
    return TokenCounts(first, keep_count(config.option("llm_retention"), first))


def default_layer(num_layers: int) -> int:
    """K = round(20/28 x layers) (the official layer 20 of a 28-layer LLM), at most the last layer."""
    return min(num_layers - 1, round_half_up(PRUNING_LAYER / REFERENCE_LAYERS * num_layers))


METHOD = Method(
    "flashvid",
    "Fan et al., FlashVID: Efficient Video Large Language Models via Training-free Tree-based Spatiotemporal "
    "Token Merging, ICLR 2026 (arXiv 2602.08024)",
    "per segment: attention/diversity-selected tokens (ADTS) + redundancy trees across frames (TSTM) merged by "
    "DPC-kNN per frame; attention pruning at layer K",
    stage1=_stage1,
    inner=_inner,
    inner_attention="previous",
    default_layer=default_layer,
    uses=("retention", "inner_layer"),
    counts_rule=flashvid_counts,
    options={"alpha": ALPHA, "temporal_threshold": TEMPORAL_THRESHOLD, "segment_threshold": SEGMENT_THRESHOLD,
             "min_segments": MIN_SEGMENTS, "selection": SELECTION, "k": DPC_K, "llm_retention": LLM_RETENTION,
             "tree_mean": False},
    option_ranges={"alpha": (0.0, 1.0), "temporal_threshold": (-1.0, 1.0), "segment_threshold": (-1.0, 1.0),
                   "min_segments": (1, math.inf), "k": (1, math.inf), "llm_retention": (0.0, 1.0)},
    option_choices={"selection": SELECTIONS},
    positions="contiguous",
)
