"""The model-independent part of a compressed Video-LLM answer.

`VideoLLM` owns one transformers model and its processor and answers questions about videos,
either uncompressed (`config=None`) or with stc. Data flows one way: video -> encoder features
and contribution scores (cached per video) -> stage 1 -> prompt with exactly that many
placeholders and the kept tokens' ORIGINAL position ids -> generate, with stage 2 hooked in at
layer K for this call only -> `Answer` (text, `Stats`, `Provenance`). What differs between model
families (preprocessing, where scores come from, the prompt layout, positions) lives in one
`FamilyAdapter` subclass per family.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from ..compress import Compressed
from ..config import STCConfig
from ..flops import flops
from ..merge import Merged
from ..methods import get_method, identity
from ..video import Video, load_video
from .inner import InnerPlan, InnerPruning

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
    aux:      family-specific data the prompt layout needs (e.g. Qwen's video_grid_thw).
    """

    features: torch.Tensor
    scores: torch.Tensor
    extra: torch.Tensor | None
    grid: tuple[int, int]
    frames_per_slot: int
    vision_seconds: float
    aux: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.features.shape[0] * self.features.shape[1]

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size() + self.scores.numel() * 4


@dataclass
class PromptInputs:
    """What `generate` needs for one prompt, plus where the visual span sits in it."""

    generate_kwargs: dict
    prompt_len: int
    visual_start: int  # first compressed visual token
    visual_end: int  # one past the last compressed visual token (extra tokens follow)
    text_start: int  # first text row after the video (question + assistant prefix)


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
class Prepared:
    """One prompt ready for the model (see `VideoLLM.prepare`)."""

    encoded: Encoded
    cached: bool
    kept: Compressed
    inputs: PromptInputs
    compress_seconds: float
    pruning: InnerPruning | None

    def stage2(self):
        """Context manager: stage 2's hooks for one model call (a no-op without stage 2)."""
        return self.pruning if self.pruning is not None else nullcontext()


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


def _is_out_of_memory(error: BaseException) -> bool:
    # CUDA raises OutOfMemoryError; the CPU allocator raises a plain RuntimeError.
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


MAX_QUESTION_CHARS = 2000


def check_question(question) -> str:
    """The question, stripped; ValueError for a non-string, empty or over-long question."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    question = question.strip()
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"question is too long ({len(question)} characters; at most {MAX_QUESTION_CHARS})")
    return question


class _Timer(BaseStreamer):
    """Streamer that timestamps the first generated token and the end of generation."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.calls = 0
        self.first: float | None = None
        self.last: float | None = None
        self.tokens = 0

    def put(self, value):
        self.calls += 1
        if self.calls == 1:  # the prompt
            return
        self.sync()
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.tokens += value.numel()
        self.last = now

    def end(self):
        pass


class _PeakMemory:
    """Peak memory during a block: CUDA max allocated on GPU, sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "process_rss"
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())


class FamilyAdapter:
    """What one model family must provide. Subclasses: one file per family."""

    model_type: str = ""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    def encode(self, video: Video) -> Encoded:
        raise NotImplementedError

    def prompt_inputs(self, question: str, encoded: Encoded, kept: Compressed) -> PromptInputs:
        raise NotImplementedError

    def decoder_layers(self) -> torch.nn.ModuleList:
        raise NotImplementedError

    @property
    def tokenizer(self):
        return self.processor.tokenizer


class VideoLLM:
    """A loaded Video-LLM that answers with or without stc (see `stc.load`).

    One model instance serves both the baseline and compressed runs; stage 2's hooks live only
    inside one `answer` call. Encoded videos are cached (LRU, bounded by ``cache_entries`` and
    ``cache_bytes``) so back-to-back runs on the same frames encode once.
    """

    def __init__(
        self,
        model,
        processor,
        adapter: FamilyAdapter,
        *,
        model_id: str,
        cache_entries: int = 4,
        cache_bytes: int = 2 * 2**30,
    ):
        self.model = model
        self.processor = processor
        self.adapter = adapter
        self.model_id = model_id
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, Encoded] = OrderedDict()
        self._lock = threading.RLock()

    # -- facts -------------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return len(self.adapter.decoder_layers())

    @property
    def is_tiny(self) -> bool:
        return self.model_id.startswith("tiny-random/")

    def __repr__(self) -> str:
        return f"VideoLLM({self.model_id!r}, {self.adapter.model_type}, device={self.device}, dtype={self.dtype})"

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, video: Video) -> tuple[Encoded, bool]:
        """Encoded features of ``video`` and whether they came from the cache."""
        key = video.content_hash
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key], True
        encoded = self.adapter.encode(video)
        with self._lock:
            self._cache[key] = encoded
            while len(self._cache) > self.cache_entries or (
                len(self._cache) > 1 and sum(e.nbytes for e in self._cache.values()) > self.cache_bytes
            ):
                self._cache.popitem(last=False)
        return encoded, False

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- answering ---------------------------------------------------------------------------
    def inner_layer(self, config: STCConfig) -> int | None:
        """Layer K this model uses for ``config`` (its method's default when unset); None when
        the method does nothing inside the LLM."""
        method = get_method(config.method)
        return method.layer(config, self.num_layers) if method.inner is not None else None

    def _as_video(self, video, num_frames: int, step) -> Video:
        if isinstance(video, Video):
            return video
        step("decoding video")
        return load_video(Path(video), num_frames=num_frames)

    @torch.no_grad()
    def prepare(
        self, video: Video, question: str, config: STCConfig | None = None, progress: Callable[[str], None] | None = None
    ) -> Prepared:
        """Everything before generation: encode (cached), stage 1, the prompt, stage 2's patch.

        The returned `Prepared` holds the generate kwargs and, when stage 2 runs, an
        `InnerPruning` to enter around the model call (``with prepared.stage2(): ...``).
        """
        question = check_question(question)
        if config is not None and not isinstance(config, STCConfig):
            raise ValueError(f"config must be an stc.STCConfig or None, got {type(config).__name__}")
        step = progress or (lambda _msg: None)
        method = get_method("none" if config is None else config.method)
        step("encoding video")
        encoded, cached = self.encode(video)
        step("compressing" if method.stage1 is not None else "preparing prompt")
        total = encoded.num_tokens
        self._sync()
        t0 = time.perf_counter()
        if method.stage1 is None:
            kept = identity(encoded.features)
        else:
            budget = method.stage1_budget(config, total)
            kept = method.stage1(encoded.features, encoded.scores, budget, grid=encoded.grid, config=config)
        self._sync()
        compress_seconds = time.perf_counter() - t0 if method.stage1 is not None else 0.0
        inputs = self.adapter.prompt_inputs(question, encoded, kept)
        pruning = None
        n_stage1 = kept.tokens.shape[0]
        keep_count = method.inner_keep_count(config, total, n_stage1) if config is not None else n_stage1
        if keep_count < n_stage1:
            plan = InnerPlan(
                layer=method.layer(config, self.num_layers),
                visual_start=inputs.visual_start,
                visual_end=inputs.visual_end,
                text_start=inputs.text_start,
                prompt_len=inputs.prompt_len,
                keep_count=keep_count,
                strategy=method.inner(config),
            )
            pruning = InnerPruning(self.adapter.decoder_layers(), plan)
        return Prepared(encoded, cached, kept, inputs, compress_seconds, pruning)

    @torch.no_grad()
    def answer(
        self,
        video: Video | str | os.PathLike,
        question: str,
        *,
        config: STCConfig | None = None,
        max_new_tokens: int = 128,
        num_frames: int = 32,
        progress: Callable[[str], None] | None = None,
        max_seconds: float | None = None,
    ) -> Answer:
        """Answer ``question`` about ``video`` (a `Video` or a path, sampled to ``num_frames``).

        ``config=None`` runs the uncompressed baseline; an `STCConfig` runs stage 1 before the
        LLM and stage 2 at layer K (``inner_keep=1.0`` turns stage 2 off). ``progress`` gets the
        name of each step; ``max_seconds`` bounds generation time (the answer is cut there).
        Raises ValueError for bad input and `OutOfMemory` (the model stays usable) when the
        device runs out of memory.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 4096:
            raise ValueError(f"max_new_tokens must be an integer in [1, 4096], got {max_new_tokens!r}")
        if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
            raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")
        step = progress or (lambda _msg: None)
        video = self._as_video(video, num_frames, step)
        try:
            with self._lock, _PeakMemory(self.device) as memory:
                prep = self.prepare(video, question, config, progress=step)
                step("generating")
                timer = _Timer(self._sync)
                self._sync()
                t_gen = time.perf_counter()
                with prep.stage2():
                    out = self.model.generate(
                        **prep.inputs.generate_kwargs,
                        max_new_tokens=max_new_tokens,
                        max_time=max_seconds,
                        do_sample=False,
                        num_beams=1,
                        streamer=timer,
                    )
                self._sync()
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not _is_out_of_memory(e):
                raise
            self._recover_memory()
            raise OutOfMemory(
                f"out of {self.device.type.upper()} memory with {video.num_frames} frames on {self.model_id}; "
                "try fewer frames or a lower retention"
            ) from e

        inputs, kept, encoded = prep.inputs, prep.kept, prep.encoded
        new_ids = out[0, inputs.prompt_len :]
        text = self.adapter.tokenizer.decode(new_ids, skip_special_tokens=True).strip()
        merged = prep.pruning.merged if prep.pruning is not None else None
        n_stage1 = kept.tokens.shape[0]
        n_stage2 = merged.keep_index.numel() if merged is not None else n_stage1
        layer = prep.pruning.plan.layer if merged is not None else None
        prefill = (timer.first - t_gen) if timer.first is not None else 0.0
        decode_rate = (timer.tokens - 1) / (timer.last - timer.first) if timer.tokens > 1 else 0.0
        stats = Stats(
            visual_tokens=encoded.num_tokens,
            visual_tokens_stage1=n_stage1,
            visual_tokens_stage2=n_stage2,
            text_tokens=inputs.prompt_len - (inputs.visual_end - inputs.visual_start),
            new_tokens=int(new_ids.numel()),
            flops=flops(self, n_stage1, inner_layer=layer, inner_keep=n_stage2 / n_stage1),
            flops_baseline=flops(self, encoded.num_tokens),
            vision_seconds=encoded.vision_seconds,
            vision_cached=prep.cached,
            compress_seconds=prep.compress_seconds,
            prefill_seconds=prefill,
            ttft_seconds=encoded.vision_seconds + prep.compress_seconds + prefill,
            decode_tokens_per_second=decode_rate,
            peak_memory_bytes=int(memory.peak),
            peak_memory_kind=memory.kind,
            inner_layer=layer,
            device=str(self.device),
        )
        notes = [video.note] if video.note else []
        if max_seconds is not None and stats.new_tokens < max_new_tokens and time.perf_counter() - t_gen >= max_seconds:
            notes.append(f"generation stopped at the {max_seconds:g} s limit")
        return Answer(
            text=text, stats=stats, provenance=provenance(encoded, kept, merged), config=config, notes=notes
        )

    def _recover_memory(self) -> None:
        """After an out-of-memory error: drop cached features and free the allocator's cache."""
        self.clear_cache()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def provenance(encoded: Encoded, kept: Compressed, merged: Merged | None) -> Provenance:
    """Per-patch fate from stage 1's assignment and stage 2's kept set."""
    s, n, _ = encoded.features.shape
    gh, gw = encoded.grid
    slot = kept.assignment.cpu().numpy().astype(np.int32)
    selected = kept.selected.cpu().numpy()
    status = np.full(s * n, DROPPED, dtype=np.int8)
    cluster = np.full(s * n, -1, dtype=np.int32)
    has = slot >= 0
    status[has] = np.where(selected[slot[has]], SELECTED, REFILLED)
    refilled = has & (status == REFILLED)
    cluster[refilled] = slot[refilled]
    if merged is not None:
        kept_slots = np.zeros(kept.tokens.shape[0], dtype=bool)
        kept_slots[merged.keep_index.cpu().numpy()] = True
        status[has & ~kept_slots[np.maximum(slot, 0)]] = MERGED_AT_K
    source = kept.source.cpu().numpy()
    if merged is not None:
        source = source[merged.keep_index.cpu().numpy()]
    return Provenance(
        status=status.reshape(s, gh, gw),
        cluster=cluster.reshape(s, gh, gw),
        slot=slot.reshape(s, gh, gw),
        frames_per_slot=encoded.frames_per_slot,
        timestamps=np.asarray(encoded.aux.get("timestamps", np.zeros(s)), dtype=np.float64),
        tokens_per_frame=np.bincount(source // n, minlength=s),
    )
