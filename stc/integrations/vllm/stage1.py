"""stc's stage 1 in the shapes vLLM's Qwen2.5-VL and Qwen3-VL (dense and MoE) work with: pure functions, no
vLLM import.

vLLM hands a pruning model each video as one flat run of merged tokens [T*N, D] (row-major over
temporal patches, then the merged h x w grid). Qwen2.5-VL expects back the kept embeddings with
four position channels appended: [t, h, w] relative to the video's first token, and one "text
offset" channel telling where the text after the video resumes (vLLM's
`recompute_mrope_positions` reads it from the first kept token). Here the kept tokens carry
their stock positions (the uncompressed prompt's, as the transformers adapter keeps them) and
the text offset is the full grid's largest position + 1, so the text after the video keeps its
stock positions too and decoding continues where the uncompressed prompt would. (Qwen3-VL's
five channels are built by vLLM's own `_create_final_video_embeddings` from the kept mask:
`qwen3_vl.py`.)

Configuration comes from the model's hf_config (vLLM's ``hf_overrides``): ``stc_retention``,
``stc_tau``, ``stc_cluster_ratio``, ``stc_knn_k``, validated by `STCConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...arith import budget_for
from ...compress import DEFAULT_CLUSTER_RATIO, DEFAULT_KNN_K, DEFAULT_TAU, compress_tokens
from ...config import STCConfig

__all__ = [
    "ARCHITECTURES",
    "OVERRIDE_KEYS",
    "SUPPORTED_MODEL_TYPES",
    "Stage1Options",
    "check_config",
    "check_supported",
    "compress_features",
    "compress_video",
    "merge_unit_scores",
    "options_from_config",
    "uncompressed_prompt",
    "video_budget",
    "video_positions",
]

# hf_overrides key -> Stage1Options field. Prefixed: they live in the checkpoint's own config.
OVERRIDE_KEYS = {
    "stc_retention": "retention",
    "stc_tau": "tau",
    "stc_cluster_ratio": "cluster_ratio",
    "stc_knn_k": "knn_k",
}


@dataclass(frozen=True)
class Stage1Options:
    """Stage-1 hyper-parameters (shared/method.md); stage 2 does not run inside vLLM."""

    retention: float
    tau: float = DEFAULT_TAU
    cluster_ratio: float = DEFAULT_CLUSTER_RATIO
    knn_k: int = DEFAULT_KNN_K


def options_from_config(hf_config) -> Stage1Options:
    """The stage-1 options an hf_config carries (vLLM applies ``hf_overrides`` to it).

    ``stc_retention`` is required; the rest default to the paper's values. Values are checked
    by `STCConfig`, so a bad one fails with the same message as in the library.
    """
    given = {field: getattr(hf_config, key) for key, field in OVERRIDE_KEYS.items() if hasattr(hf_config, key)}
    if "retention" not in given:
        arch = ARCHITECTURES.get(getattr(hf_config, "model_type", None), ARCHITECTURES["qwen2_5_vl"])
        raise ValueError(
            f"stc's vLLM model needs its retention: pass hf_overrides={{'architectures': "
            f"['{arch}'], 'stc_retention': 0.1}} "
            f"(optional keys: {', '.join(k for k in OVERRIDE_KEYS if k != 'stc_retention')})"
        )
    checked = STCConfig(**given, inner_keep=1.0)
    return Stage1Options(
        retention=checked.retention, tau=checked.tau, cluster_ratio=checked.cluster_ratio, knn_k=checked.knn_k
    )


# checkpoint model_type -> the stc architecture that serves it (one vLLM model class each)
ARCHITECTURES = {
    "qwen2_5_vl": "STCQwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "STCQwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "STCQwen3VLMoeForConditionalGeneration",
}
SUPPORTED_MODEL_TYPES = tuple(ARCHITECTURES)
# families stc's library compresses but its vLLM plugin does not serve yet, and why
_NOT_SERVED = {
    "qwen3_5": "vLLM's Qwen3.5 class is not subclassed by stc yet",
    "qwen3_5_moe": "vLLM's Qwen3.5 class is not subclassed by stc yet",
}


def check_supported(hf_config, architecture: str | None = None) -> None:
    """A clear error for a checkpoint stc's model classes cannot serve, or (``architecture``:
    the stc class selected) one that another stc class serves."""
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        why = f" ({_NOT_SERVED[model_type]})" if model_type in _NOT_SERVED else ""
        raise NotImplementedError(
            f"stc's vLLM plugin serves model_type {', '.join(SUPPORTED_MODEL_TYPES)}; this checkpoint is "
            f"{model_type!r}{why}. Drop the {architecture or 'STC...'} override for it "
            "(README, 'Serving with vLLM': what is supported)."
        )
    if architecture is not None and architecture != ARCHITECTURES[model_type]:
        raise NotImplementedError(
            f"this checkpoint is {model_type!r}: select {ARCHITECTURES[model_type]} for it, not {architecture} "
            f"(stc.integrations.vllm.hf_overrides(retention, model_type={model_type!r}))"
        )


def check_config(hf_config, architecture: str | None = None) -> Stage1Options:
    """The checkpoint is supported (by ``architecture``, when given) and its ``stc_*`` options
    are valid: the options, else the one error stc raises for it (NotImplementedError or
    ValueError)."""
    check_supported(hf_config, architecture)
    return options_from_config(hf_config)


def _grid(grid_thw, merge: int) -> tuple[int, int, int]:
    """(T, H/merge, W/merge) of a video's patch grid (t, h, w)."""
    t, h, w = (int(x) for x in grid_thw)
    return t, h // merge, w // merge


def video_budget(grid_thw, merge: int, retention: float) -> int:
    """Tokens a video keeps: B = round_half_up(retention * T * N), clamped to [1, T*N], where T is
    the number of temporal patches and N = (h / merge) * (w / merge) their merged tokens."""
    t, gh, gw = _grid(grid_thw, merge)
    return budget_for(retention, t * gh * gw)


def merge_unit_scores(received: torch.Tensor, merge_unit: int, window_index: torch.Tensor) -> torch.Tensor:
    """Per merged token scores in feature order.

    received: [L] per-patch scores in the vision blocks' order, where each run of
    ``merge_unit`` patches is one merged token; window_index: [L / merge_unit], the permutation
    the tower applied to merged tokens before its blocks (vLLM's ``get_window_index_thw``).
    Returns [L / merge_unit]: the mean over each merge unit, put back in row-major order as the
    tower's output is.
    """
    units = received.view(-1, merge_unit).mean(dim=-1)
    return units[torch.argsort(window_index.to(units.device))]


def video_positions(grid_thw, merge: int, t_factor: float) -> torch.Tensor:
    """[T*N, 3] stock mRoPE (t, h, w) of a video's merged tokens relative to its first token,
    as vLLM numbers the uncompressed prompt: t = floor(t_index * t_factor), with t_factor =
    seconds per temporal patch * tokens_per_second."""
    t, gh, gw = _grid(grid_thw, merge)
    grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij"))
    grid[0] = (grid[0].double() * t_factor).long()
    return grid.reshape(3, -1).T


@torch.no_grad()
def compress_features(embeds: torch.Tensor, scores: torch.Tensor, grid_thw, merge: int, options: Stage1Options):
    """`stc.compress_tokens` on one video's merged tokens embeds [T*N, D] (row-major) with scores
    [T*N], at the video's budget: the `Compressed` (tokens [B, D] in original order, source [B]
    strictly increasing flat indices, selected, assignment)."""
    t, gh, gw = _grid(grid_thw, merge)
    n = gh * gw
    return compress_tokens(
        embeds.reshape(t, n, -1), scores.reshape(t, n), video_budget(grid_thw, merge, options.retention),
        tau=options.tau, cluster_ratio=options.cluster_ratio, knn_k=options.knn_k,
    )


@torch.no_grad()
def compress_video(
    embeds: torch.Tensor, scores: torch.Tensor, grid_thw, merge: int, t_factor: float, options: Stage1Options
) -> tuple[torch.Tensor, torch.Tensor]:
    """stc stage 1 on one video, in vLLM's Qwen2.5-VL pruning layout.

    embeds: [T*N, D] merged tokens (row-major); scores: [T*N]. Returns (out, source):
    out [B, D + 4] = the kept tokens (selected, and refilled cluster means at their centres) in
    original order, each followed by its stock (t, h, w) and the text offset (full grid's
    largest position + 1); source [B] the flat index of each kept token (strictly increasing).
    """
    kept = compress_features(embeds, scores, grid_thw, merge, options)
    positions = video_positions(grid_thw, merge, t_factor)
    source = kept.source.cpu()
    text_offset = positions.max() + 1
    channels = torch.cat([positions[source], text_offset.expand(source.numel(), 1)], dim=1)
    return torch.cat([kept.tokens, channels.to(kept.tokens)], dim=1), kept.source


def uncompressed_prompt(
    input_tokens: list[int], media: list[tuple[int, int, list[int] | None]], video_id: int
) -> tuple[list[int], list[int], np.ndarray]:
    """The uncompressed prompt a compressed one stands for, and where each of its tokens sits in it.

    media: (offset, length, full) per item, by offset: the item's placeholder is
    input_tokens[offset : offset + length], ``full`` the uncompressed placeholder (None: the
    item is not compressed). Returns (tokens, offsets, index): the uncompressed prompt, each
    item's offset in it, and per token of ``input_tokens`` its index in it. Inside a compressed
    placeholder the i-th non-video token stands for the i-th non-video token of ``full`` and the
    i-th video token for the i-th video token of ``full`` (a kept token's real place is only
    known once the encoder has run); everything outside the placeholders keeps its own token.
    """
    tokens: list[int] = []
    offsets: list[int] = []
    index = np.empty(len(input_tokens), dtype=np.int64)
    start = 0
    for offset, length, full in media:
        index[start:offset] = np.arange(offset - start) + len(tokens)
        tokens += input_tokens[start:offset]
        offsets.append(len(tokens))
        placeholder = input_tokens[offset : offset + length]
        if full is None:
            full = placeholder
        is_video = np.asarray(placeholder, dtype=np.int64) == video_id
        full_is_video = np.asarray(full, dtype=np.int64) == video_id
        if is_video.sum() > full_is_video.sum() or (~is_video).sum() != (~full_is_video).sum():
            raise ValueError("a compressed placeholder must be its uncompressed one with video tokens removed")
        where = np.empty(length, dtype=np.int64)
        where[is_video] = np.flatnonzero(full_is_video)[: int(is_video.sum())]
        where[~is_video] = np.flatnonzero(~full_is_video)
        index[offset : offset + length] = where + len(tokens)
        tokens += list(full)
        start = offset + length
    index[start:] = np.arange(len(input_tokens) - start) + len(tokens)
    tokens += input_tokens[start:]
    return tokens, offsets, index
