"""What stc's stages and a Video-LLM answer produce, as plain data.

Light on purpose (torch and the standard library, no transformers, nothing else of stc): the
algorithm returns these, the adapters fill them, and the demo, the evaluation and the
visualisation read them without importing any model code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .config import STCConfig

__all__ = [
    "DROPPED", "MERGED_AT_K", "REFILLED", "SELECTED", "STATUS_NAMES",
    "Answer", "Compressed", "Encoded", "Merged", "OutOfMemory", "Provenance", "Stats",
]


@dataclass(frozen=True)
class Compressed:
    """Result of :func:`compress_tokens` for one video of T frames x N tokens (M = T * N).

    tokens:     [B, D] output tokens in original spatiotemporal (frame-major) order.
    source:     [B] long, strictly increasing flat index into T*N of the position each output
                token takes (its own, or its cluster centre's).
    assignment: [M] long, output slot of every input token; -1 where no output represents it
                (only possible when the budget leaves no cluster).
    selected:   [B] bool, True for tokens picked by unified selection, False for refilled clusters.
    """

    tokens: torch.Tensor
    source: torch.Tensor
    assignment: torch.Tensor
    selected: torch.Tensor

    @property
    def budget(self) -> int:
        return self.tokens.shape[0]


@dataclass(frozen=True)
class Merged:
    """Result of :func:`merge_into_kept` for Nv visual tokens.

    tokens:     [K, D] kept tokens, each the mean of itself and the tokens merged into it, in
                original order.
    keep_index: [K] long, strictly increasing indices (into the Nv inputs) of the kept tokens.
    assignment: [Nv] long, output slot of every input token.
    """

    tokens: torch.Tensor
    keep_index: torch.Tensor
    assignment: torch.Tensor


# Provenance codes of every sampled patch (what the demo draws).
DROPPED, SELECTED, REFILLED, MERGED_AT_K = 0, 1, 2, 3
STATUS_NAMES = {DROPPED: "dropped", SELECTED: "selected", REFILLED: "refilled", MERGED_AT_K: "merged at layer K"}


@dataclass
class Encoded:
    """A video after the vision encoder and projector, ready for stage 1.

    features: [S, N, D] projected visual tokens; S pool frames (LLaVA: sampled frames;
              Qwen2.5-VL: temporal patches of 2 frames), N tokens on a (gh, gw) grid.
    scores:   [S, N] fp32 contribution of every token (encoder attention).
    extra:    [E, D] tokens after the frames that are always kept (LLaVA's image_newline).
    grid:     (gh, gw).
    frames_per_slot: sampled frames per pool frame.
    vision_seconds: measured encoder + projector time when this entry was computed.
    timestamps: [S] start time in seconds of each pool frame (its first sampled frame), for
              provenance; None: unknown (read as zeros).
    streamed: True when stage 1 ran while the frames were encoded (`Method.compressor`):
              ``features`` and ``scores`` are then zero-stride placeholders of the video's
              shape, nothing of them is held.
    deepstack: [levels, S, N, D] features every DeepStack level adds to the first decoder
              layers' visual tokens (Qwen3-VL; None for a family without DeepStack).
    aux:      what only the family's own prompt layout reads (e.g. Qwen's video_grid_thw).
    """

    features: torch.Tensor
    scores: torch.Tensor
    extra: torch.Tensor | None
    grid: tuple[int, int]
    frames_per_slot: int
    vision_seconds: float
    timestamps: np.ndarray | None = None
    streamed: bool = False
    deepstack: torch.Tensor | None = None
    aux: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.features.shape[0] * self.features.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes this entry holds (what the feature cache bounds): features, scores, DeepStack."""
        held = self.features.numel() * self.features.element_size() + self.scores.numel() * 4
        if self.deepstack is not None:
            held += self.deepstack.numel() * self.deepstack.element_size()
        return held


@dataclass
class Stats:
    """Costs of one answer. Times in seconds (device synchronised before each clock read).

    ttft_seconds = vision + compression + prefill (vision counted even when its features came
    from the cache, so compressed and baseline runs compare fairly; see vision_cached).
    flops / flops_baseline follow shared/method.md's convention (visual tokens only, 100
    decoded tokens), for this run and for the uncompressed run of the same video.
    """

    visual_tokens: int
    visual_tokens_stage1: int
    visual_tokens_stage2: int
    text_tokens: int
    new_tokens: int
    flops: float
    flops_baseline: float
    vision_seconds: float
    vision_cached: bool
    compress_seconds: float
    prefill_seconds: float
    ttft_seconds: float
    decode_tokens_per_second: float
    peak_memory_bytes: int
    peak_memory_kind: str  # "cuda_max_allocated" or "process_rss"
    inner_layer: int | None
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Provenance:
    """Fate of every sampled patch: arrays over [S pool frames, gh, gw].

    status:  DROPPED / SELECTED / REFILLED / MERGED_AT_K (stage 2 merged its token away).
    cluster: refilled cluster id (its stage-1 output slot) where the patch was refilled, else -1.
    slot:    stage-1 output slot that represents the patch, -1 if dropped.
    frames_per_slot: sampled frames per pool frame; timestamps: [S] start time of each.
    A frame whose tokens_per_frame is 0 sends nothing to the LLM: that is the method's point.
    """

    status: np.ndarray
    cluster: np.ndarray
    slot: np.ndarray
    frames_per_slot: int
    timestamps: np.ndarray
    tokens_per_frame: np.ndarray  # [S] tokens entering the LLM whose position is in each frame


@dataclass
class Answer:
    """text: the generated answer; notes: what the caller should know (e.g. the video had fewer
    frames than asked, or generation hit its time limit)."""

    text: str
    stats: Stats
    provenance: Provenance
    config: STCConfig | None
    notes: list[str] = field(default_factory=list)


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message suggests what to lower."""
