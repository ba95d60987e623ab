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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from transformers.generation.stopping_criteria import StoppingCriteriaList

from ..compress import Compressed
from ..config import STCConfig
from ..flops import flops
from ..merge import Merged
from ..methods import TokenCounts, get_method, list_methods
from ..results import (
    DROPPED,
    MERGED_AT_K,
    REFILLED,
    SELECTED,
    STATUS_NAMES,
    Answer,
    Encoded,
    OutOfMemory,
    Provenance,
    Stats,
)
from ..stream import WINDOW_FRAMES, StreamCompressor
from ..video import MAX_FRAMES, Cancelled, FramesChanged, Video, VideoStream, load_video, stream_video
from .family import MAX_QUESTION_CHARS, ZERO_WIDTH_SPACE, FamilyAdapter, PromptInputs, check_question
from .inner import InnerPlan, InnerPruning, attention_layer_for
from .measure import PeakMemory, StopWhen, Timer, is_out_of_memory

# Also re-exported from here (their earlier home): the result types and the family interface.
__all__ = [
    "DROPPED", "MAX_QUESTION_CHARS", "MERGED_AT_K", "REFILLED", "SELECTED", "STATUS_NAMES", "ZERO_WIDTH_SPACE",
    "Answer", "Encoded", "FamilyAdapter", "OutOfMemory", "Prepared", "PromptInputs", "Provenance", "Stats",
    "VideoLLM", "check_question", "provenance",
]


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


# Frames encoded at once on the streaming path.
CHUNK_FRAMES = 16
# The registered methods whose stage 1 streams (those with a ``stream`` rule): stc, stc-stage1, stc-st.
STREAM_METHODS = tuple(name for name in list_methods() if get_method(name).stream is not None)


def _streamed(config: STCConfig | None) -> bool:
    """Whether a long video under ``config`` may stream through `StreamCompressor` (methods
    with a ``stream`` rule: stc, stc-stage1, stc-st)."""
    return config is not None and get_method(config.method).stream is not None


def _check_generation(max_new_tokens, max_seconds) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 4096:
        raise ValueError(f"max_new_tokens must be an integer in [1, 4096], got {max_new_tokens!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")


@dataclass
class _Generated:
    """One generation: the decoded text and what it cost."""

    text: str
    new_tokens: int
    prefill_seconds: float
    decode_tokens_per_second: float
    seconds: float


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
        return self._layer(method, config) if method.inner is not None else None

    def _layer(self, method, config: STCConfig) -> int:
        """Layer K of ``method`` under ``config`` on this model: the method's default raised to the
        first layer the family allows (`FamilyAdapter.min_inner_layer`: Qwen3-VL's DeepStack adds
        vision features to the first layers' outputs at full length); an explicit
        ``inner_layer`` below it is refused; then kept on a layer whose attention the method can
        read (`FamilyAdapter.reading_layer`: Qwen3.5's linear-attention layers have none)."""
        layer = method.layer(config, self.num_layers)
        low = self.adapter.min_inner_layer
        if layer < low:
            if config.inner_layer is not None:
                raise ValueError(
                    f"inner_layer must be >= {low} on {self.adapter.model_type}: its first {low} decoder layers add "
                    f"vision features (DeepStack) to every visual token, so the sequence is shortened after them"
                )
            layer = low
        return self.adapter.reading_layer(layer, method, explicit=config.inner_layer is not None, low=low)

    def _as_video(self, video, num_frames: int, step, fps: float | None = None, max_frames: int = MAX_FRAMES,
                  config: STCConfig | None = None, lazy: bool = True,
                  should_stop: Callable[[], bool] | None = None) -> Video | VideoStream:
        """``video`` itself, or the file sampled: a `VideoStream` (decoded chunk by chunk while
        it is encoded) when ``answer`` will stream it (see `streams`), else a `Video`.
        ``should_stop`` is asked while frames decode (`stc.video.Cancelled`)."""
        if isinstance(video, Video):
            return video
        if lazy and _streamed(config) and self.adapter.streamable:
            stream = stream_video(Path(video), num_frames, fps=fps, max_frames=max_frames, chunk=CHUNK_FRAMES,
                                  should_stop=should_stop)
            if self.streams(stream, config):
                return stream
            step("decoding video")
            return stream.read()
        step("decoding video")
        return load_video(Path(video), num_frames=num_frames, fps=fps, max_frames=max_frames, should_stop=should_stop)

    @contextmanager
    def _stoppable(self, should_stop: Callable[[], bool] | None):
        """While inside: ``should_stop()`` is asked before each layer of the vision encoder, and
        True raises `stc.video.Cancelled` there (encoding is the longest step before the first
        token). Nothing is hooked when ``should_stop`` is None."""
        if should_stop is None:
            yield
            return

        def check(_module, _args):
            if should_stop():
                raise Cancelled("cancelled while encoding the video")

        handles = [layer.register_forward_pre_hook(check) for layer in self.adapter.vision_layers()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def streams(self, video: Video | VideoStream, config: STCConfig | None) -> bool:
        """Whether ``answer`` encodes ``video`` in chunks through `StreamCompressor`: a method that
        streams (stc, stc-stage1, stc-st) on more than one window of frames
        (`stc.stream.WINDOW_FRAMES`), on a family whose frames encode independently (LLaVA-OneVision)."""
        return (_streamed(config) and self.adapter.streamable
                and video.num_frames > WINDOW_FRAMES)

    def _encode_stream(self, video: Video | VideoStream, config: STCConfig) -> tuple[Encoded, Compressed, float]:
        """Encode CHUNK_FRAMES frames at a time and hand each chunk's features to a
        `StreamCompressor` (then drop them): peak memory is one chunk's activations and
        features plus the budget, whatever the frame count (and, for a `VideoStream`, one
        chunk of decoded frames). Returns an `Encoded` whose ``features`` is a zero-stride
        placeholder of the video's [S, N, D] shape (nothing is held), the stage-1 result, and
        the compression time. Raises `FramesChanged` when a stream gives other than the
        frames it planned (the budget was set for those)."""
        compressor, vision, compress, last = None, 0.0, 0.0, None
        frames = video.num_frames
        if isinstance(video, VideoStream):
            chunks = iter(video)
        else:
            chunks = (video.take(slice(start, start + CHUNK_FRAMES)) for start in range(0, frames, CHUNK_FRAMES))
        for chunk in chunks:
            last = self.adapter.encode(chunk)
            del chunk
            vision += last.vision_seconds
            if compressor is None:
                budget = config.budget(frames * last.features.shape[1])
                compressor = StreamCompressor(budget, **get_method(config.method).stream(config))
            self._sync()
            t0 = time.perf_counter()
            compressor.add(last.features, last.scores)
            self._sync()
            compress += time.perf_counter() - t0
            last.features = last.scores = None  # this chunk's features are not kept
        if len(video.timestamps) != frames:
            raise FramesChanged(f"{video.source}: {len(video.timestamps)} frames decoded, {frames} planned")
        t0 = time.perf_counter()
        kept = compressor.finish()
        self._sync()
        compress += time.perf_counter() - t0
        n, d = compressor.tokens_per_frame, kept.tokens.shape[1]
        encoded = Encoded(
            features=kept.tokens.new_empty(1, 1, d).expand(frames, n, d),
            scores=torch.empty(1, 1).expand(frames, n),
            extra=last.extra,
            grid=last.grid,
            frames_per_slot=last.frames_per_slot,
            vision_seconds=vision,
            aux={"timestamps": video.timestamps, "streamed": True},
        )
        return encoded, kept, compress

    @torch.no_grad()
    def prepare(
        self, video: Video | VideoStream, question: str, config: STCConfig | None = None, progress: Callable[[str], None] | None = None
    ) -> Prepared:
        """Everything before generation: encode (cached), stage 1, the prompt, stage 2's patch.

        The returned `Prepared` holds the generate kwargs and, when stage 2 runs, an
        `InnerPruning` to enter around the model call (``with prepared.stage2(): ...``).
        """
        question = check_question(question)
        if config is not None and not isinstance(config, STCConfig):
            raise ValueError(f"config must be an stc.STCConfig or None, got {type(config).__name__}")
        if isinstance(video, VideoStream) and not self.streams(video, config):
            video = video.read()
        step = progress or (lambda _msg: None)
        method = get_method("none" if config is None else config.method)
        if self.streams(video, config):
            decoding = "decoding, " if isinstance(video, VideoStream) else ""
            step(f"{decoding}encoding and compressing {video.num_frames} frames, {CHUNK_FRAMES} at a time")
            encoded, kept, compress_seconds = self._encode_stream(video, config)
            cached, counts = False, method.counts(config, encoded.num_tokens)
        else:
            step("encoding video")
            encoded, cached = self.encode(video)
            step("compressing" if method.stage1 is not None else "preparing prompt")
            total = encoded.num_tokens
            self._sync()
            t0 = time.perf_counter()
            counts = method.counts(config, total) if config is not None else TokenCounts(total, total)
            kept = method.compress(encoded.features, encoded.scores, counts.stage1, grid=encoded.grid, config=config)
            self._sync()
            compress_seconds = time.perf_counter() - t0 if method.stage1 is not None else 0.0
        rule = config.position_rule if config is not None else "original"
        inputs = self.adapter.prompt_inputs(question, encoded, kept, positions=rule)
        pruning = None
        n_stage1, keep_count = kept.tokens.shape[0], counts.after_layer
        if keep_count < n_stage1:
            layer = self._layer(method, config)
            plan = InnerPlan(
                layer=layer,
                visual_start=inputs.visual_start,
                visual_end=inputs.visual_end,
                text_start=inputs.text_start,
                prompt_len=inputs.prompt_len,
                keep_count=keep_count,
                strategy=method.inner(config),
                attention_layer=attention_layer_for(layer, method.inner_attention),
                visual_index=inputs.visual_index,
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
        fps: float | None = None,
        max_frames: int = MAX_FRAMES,
        progress: Callable[[str], None] | None = None,
        max_seconds: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Answer:
        """Answer ``question`` about ``video`` (a `Video`, or a path sampled to ``num_frames``, or
        at ``fps`` frames per second up to ``max_frames``: see `stc.load_video`).

        Long videos: with stc (``method`` "stc" or "stc-stage1") on more than
        `stc.stream.WINDOW_FRAMES` frames, LLaVA-OneVision encodes CHUNK_FRAMES frames at a time
        into a `StreamCompressor` (see `streams`), so memory holds one chunk's features and the
        budget, never every frame's features; given a path, frames are decoded chunk by chunk too
        (`stc.video.stream_video`), so no more than one chunk of decoded frames is held either. Give the
        budget in tokens with ``STCConfig(max_tokens=...)`` to pay the same cost for more frames.

        ``config=None`` runs the uncompressed baseline; an `STCConfig` runs stage 1 before the
        LLM and stage 2 at layer K (``inner_keep=1.0`` turns stage 2 off). ``progress`` gets the
        name of each step; ``max_seconds`` bounds generation time (the answer is cut there);
        ``should_stop()`` is asked after every new token, and True cuts the answer there too
        (e.g. its caller went away); before generation (decoding a path's frames, before each
        vision-encoder layer) True raises `stc.video.Cancelled` instead: there is no answer yet.
        Raises ValueError for bad input and `OutOfMemory` (the model stays usable) when the
        device runs out of memory.
        """
        _check_generation(max_new_tokens, max_seconds)
        step = progress or (lambda _msg: None)
        source = video
        video = self._as_video(source, num_frames, step, fps, max_frames, config, should_stop=should_stop)
        with self._out_of_memory_as_error(video):
            with self._lock, PeakMemory(self.device) as memory:
                with self._stoppable(should_stop):
                    try:
                        prep = self.prepare(video, question, config, progress=step)
                    except FramesChanged:  # the file had to be sampled again mid-stream: decode it whole
                        video = self._as_video(source, num_frames, step, fps, max_frames, config, lazy=False,
                                               should_stop=should_stop)
                        prep = self.prepare(video, question, config, progress=step)
                step("generating")
                generated = self._generate(prep, max_new_tokens, max_seconds, should_stop)
        stats = self._stats(prep, generated, memory)
        notes = [video.note] if video.note else []
        if stats.new_tokens < max_new_tokens:
            if max_seconds is not None and generated.seconds >= max_seconds:
                notes.append(f"generation stopped at the {max_seconds:g} s limit")
            elif should_stop is not None and should_stop():
                notes.append("generation stopped: cancelled")
        merged = prep.pruning.merged if prep.pruning is not None else None
        return Answer(text=generated.text, stats=stats, provenance=provenance(prep.encoded, prep.kept, merged),
                      config=config, notes=notes)

    @contextmanager
    def _out_of_memory_as_error(self, video: Video):
        """Turn the device running out of memory into `OutOfMemory` (one line, what to lower),
        after dropping the caches so the model keeps serving."""
        try:
            yield
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            self._recover_memory()
            raise OutOfMemory(
                f"out of {self.device.type.upper()} memory with {video.num_frames} frames on {self.model_id}; "
                "try fewer frames or a lower retention"
            ) from e

    def _generate(self, prep: Prepared, max_new_tokens: int, max_seconds, should_stop) -> _Generated:
        """Greedy generation with stage 2 hooked in for this call; timed per token."""
        timer = Timer(self._sync)
        self._sync()
        start = time.perf_counter()
        with prep.stage2():
            out = self.model.generate(
                **prep.inputs.generate_kwargs,
                max_new_tokens=max_new_tokens,
                max_time=max_seconds,
                do_sample=False,
                num_beams=1,
                streamer=timer,
                stopping_criteria=StoppingCriteriaList([StopWhen(should_stop)]) if should_stop else None,
            )
        self._sync()
        new_ids = out[0, prep.inputs.prompt_len :]
        return _Generated(
            text=self.adapter.tokenizer.decode(new_ids, skip_special_tokens=True).strip(),
            new_tokens=int(new_ids.numel()),
            prefill_seconds=(timer.first - start) if timer.first is not None else 0.0,
            decode_tokens_per_second=(timer.tokens - 1) / (timer.last - timer.first) if timer.tokens > 1 else 0.0,
            seconds=time.perf_counter() - start,
        )

    def _stats(self, prep: Prepared, generated: _Generated, memory: PeakMemory) -> Stats:
        """Token counts, FLOPs (this run and the uncompressed one) and the measured costs."""
        inputs, encoded = prep.inputs, prep.encoded
        merged = prep.pruning.merged if prep.pruning is not None else None
        n_stage1 = prep.kept.tokens.shape[0]
        n_stage2 = merged.keep_index.numel() if merged is not None else n_stage1
        layer = prep.pruning.plan.layer if merged is not None else None
        return Stats(
            visual_tokens=encoded.num_tokens,
            visual_tokens_stage1=n_stage1,
            visual_tokens_stage2=n_stage2,
            text_tokens=inputs.prompt_len - inputs.num_visual,
            new_tokens=generated.new_tokens,
            flops=flops(self, n_stage1, inner_layer=layer, inner_keep=n_stage2 / n_stage1),
            flops_baseline=flops(self, encoded.num_tokens),
            vision_seconds=encoded.vision_seconds,
            vision_cached=prep.cached,
            compress_seconds=prep.compress_seconds,
            prefill_seconds=generated.prefill_seconds,
            ttft_seconds=encoded.vision_seconds + prep.compress_seconds + generated.prefill_seconds,
            decode_tokens_per_second=generated.decode_tokens_per_second,
            peak_memory_bytes=int(memory.peak),
            peak_memory_kind=memory.kind,
            inner_layer=layer,
            device=str(self.device),
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
