"""`vidcom2`: VidCom2 (Liu et al., "Video Compression Commander: Plug-and-Play Inference
Acceleration for Video Large Language Models", EMNLP 2025, arXiv 2505.14454), the second video
pruner vLLM ships (``video_pruning_method='vidcom2'``).

Tokens that look like everything else are redundant; tokens unlike their video and their frame
are kept. On the lowest-variance half of the channels (variance over all S*N tokens), every
token is L2-normalised and compared with two centres, the mean token of the whole video and
the mean token of its frame, by a multi-scale Gaussian similarity
sum_a exp(-||x - c||^2 / (2a)), a in {1/8, 1/4, 1/2, 1, 2}. A frame whose tokens are far from
the video centre is distinctive and gets a larger share: with u_t = -mean_i sim_video(t, i) and
p = softmax((u - max u) / temperature), frame t keeps k_t = round(N x r x (1 + p_t - mean p))
tokens (clamped to [1, N]; r = budget / (S*N)), the k_t with the lowest sim_video + sim_frame.
The rounding and clamping miss the budget by a few tokens; a final reconcile drops the kept
tokens with the highest similarity, or adds the unkept ones with the lowest, until exactly
``budget`` are kept. Dropped tokens are dropped, not merged.

Read: the official repository (xuyang-liu16/VidCom2: ``token_compressor/vidcom2/vidcom2.py`` and
its LLaVA / Qwen integrations) and vLLM's ``vllm/multimodal/video_prune/vidcom2.py`` (which adds
the exact-count reconcile); no code is copied. Defaults are the official ones (temperature 0.01,
channel share 0.5, bandwidths 2^-3..2^1). Positions: kept tokens keep their ORIGINAL positions,
as vLLM does and as the official Qwen2/2.5/3-VL integrations do (they slice the mRoPE position
ids); the official LLaVA-OneVision integration compresses before the sequence is built, so its
1-D positions end up renumbered contiguously (force that with ``positions="contiguous"``).
Choices of ours: every tie (channels of equal variance, tokens of equal similarity) goes to the
lower index, where the originals use an unordered top-k; the reconcile drops the highest
similarity first and, among equal ones, the higher index; scores are computed in float32.
"""

from __future__ import annotations

import math

import torch

from ..compress import Compressed
from ._common import assemble, ranks_within_rows
from .base import Method

TEMPERATURE = 0.01
CHANNEL_SHARE = 0.5
BANDWIDTHS = tuple(2.0**k for k in range(-3, 2))  # (0.125, 0.25, 0.5, 1.0, 2.0)


def low_variance_channels(flat: torch.Tensor, share: float) -> torch.Tensor:
    """[M, D] -> [M, C]: the C = max(1, floor(share x D)) channels of lowest variance over the M
    tokens (population variance; ties: lower channel first), in that order."""
    d = flat.shape[1]
    c = max(1, min(d, int(d * share)))
    variance = flat.var(dim=0, unbiased=False)
    channels = torch.sort(variance, stable=True).indices[:c]
    return flat[:, channels]


def gaussian_similarity(x: torch.Tensor, centre: torch.Tensor, bandwidths: tuple[float, ...]) -> torch.Tensor:
    """sum_a exp(-||x - centre||^2 / (2a)) over the last dim: [..., C] and a broadcastable
    centre -> [...]."""
    dist_sq = (x - centre).square().sum(dim=-1)
    return sum(torch.exp(-dist_sq / (2.0 * a)) for a in bandwidths)


@torch.no_grad()
def vidcom2_scores(
    features: torch.Tensor, *, channel_share: float = CHANNEL_SHARE, bandwidths: tuple[float, ...] = BANDWIDTHS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity to the video centre and to the frame centre, each [S, N] float32.

    features: [S, N, D]. Higher = more redundant."""
    s, n, d = features.shape
    sel = low_variance_channels(features.reshape(s * n, d).float(), channel_share)
    frames = torch.nn.functional.normalize(sel, dim=-1).view(s, n, -1)
    video_centre = frames.mean(dim=(0, 1), keepdim=True)  # [1, 1, C]
    frame_centre = frames.mean(dim=1, keepdim=True)  # [S, 1, C]
    return gaussian_similarity(frames, video_centre, bandwidths), gaussian_similarity(frames, frame_centre, bandwidths)


def frame_budgets(video_sim: torch.Tensor, retention: float, temperature: float) -> torch.Tensor:
    """[S, N] video-centre similarity -> [S] long per-frame keep counts in [1, N] (before the
    reconcile): round(N x retention x (1 + p_t - mean p)), p = softmax of frame distinctiveness
    -mean_i video_sim[t, i] at ``temperature``."""
    n = video_sim.shape[1]
    distinct = -video_sim.mean(dim=1)
    p = torch.softmax((distinct - distinct.max()) / temperature, dim=0)
    share = (retention * (1.0 + p - p.mean())).clamp(max=1.0)
    return torch.round(share * n).long().clamp(1, n)


@torch.no_grad()
def vidcom2(
    features: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    temperature: float = TEMPERATURE,
    channel_share: float = CHANNEL_SHARE,
    bandwidths: tuple[float, ...] = BANDWIDTHS,
) -> Compressed:
    """Keep the ``budget`` most distinctive tokens under VidCom2's per-frame allocation.

    features: [S, N, D]; scores: [S, N] (unused: VidCom2 needs no attention, checked for shape).
    Returns exactly ``budget`` tokens in original order, every one `selected` (copied as is).
    """
    if not bandwidths or not all(isinstance(a, (int, float)) and math.isfinite(a) and a > 0 for a in bandwidths):
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}")
    s, n, d = features.shape
    device = features.device
    video_sim, frame_sim = vidcom2_scores(features, channel_share=channel_share, bandwidths=bandwidths)
    similarity = video_sim + frame_sim  # [S, N]
    per_frame = frame_budgets(video_sim, budget / (s * n), temperature)
    keep = (ranks_within_rows(-similarity) < per_frame[:, None]).reshape(-1)

    # Reconcile: one global order of preference (lowest similarity first, ties to the lower index);
    # surplus leaves from its end, a shortfall is filled from its start.
    order = torch.sort(similarity.reshape(-1), stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(s * n, device=device)
    surplus = int(keep.sum()) - budget
    if surplus > 0:
        kept_rank = torch.where(keep, rank, -1)
        keep[torch.topk(kept_rank, surplus).indices] = False
    elif surplus < 0:
        free_rank = torch.where(keep, s * n, rank)
        keep[torch.topk(free_rank, -surplus, largest=False).indices] = True

    source = torch.nonzero(keep).squeeze(1)
    assignment = torch.full((s * n,), -1, dtype=torch.long, device=device)
    assignment[source] = torch.arange(budget, device=device)
    return assemble(features.reshape(s * n, d), source, assignment)


def _stage1(features, scores, budget, *, grid, config, options) -> Compressed:
    return vidcom2(
        features,
        scores,
        budget,
        temperature=options["temperature"],
        channel_share=options["channel_share"],
        bandwidths=tuple(options["bandwidths"]),
    )


METHOD = Method(
    "vidcom2",
    "Liu et al., Video Compression Commander: Plug-and-Play Inference Acceleration for Video Large Language "
    "Models, EMNLP 2025 (arXiv 2505.14454); vLLM's video_pruning_method='vidcom2'",
    "tokens least similar to their video and frame centres (multi-scale Gaussian, low-variance channels); "
    "distinctive frames get more of the budget (softmax)",
    stage1=_stage1,
    options={"temperature": TEMPERATURE, "channel_share": CHANNEL_SHARE, "bandwidths": BANDWIDTHS},
    option_ranges={"temperature": (1e-6, 1e6), "channel_share": (0.0, 1.0)},
    positions="original",
)
