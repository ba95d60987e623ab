"""`VideoLLM`: one loaded Video-LLM that answers questions about videos, uncompressed
(``config=None``) or compressed by a method (stc, its variants, the peers).

Data flows one way: video -> encoder features and contribution scores (cached per video,
`cache.py`; or, for a long video, streamed chunk by chunk into stage 1, `streaming.py`) -> stage 1
through the method -> a prompt with exactly that many placeholders and the kept tokens' positions
(each at its uncompressed position, or renumbered 0, 1, 2, ...: the config's ``positions``, else
the method's own convention) -> generate, with stage 2 hooked in at layer K for this call only
(`prepare.py`, `generate.py`) -> `Answer` (text, `Stats`, `Provenance`: `report.py`). What
differs between model families (preprocessing, where scores come from, the prompt layout,
positions) lives in one `FamilyAdapter` subclass per family. This module only puts those jobs
together, under one lock, with out-of-memory recovery (`measure.py`).
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Sequence

import torch

from ..config import STCConfig
from ..methods import get_method
from ..results import Answer, Encoded
from ..video import MAX_FRAMES, FramesChanged, Video, VideoStream
from .cache import FeatureCache
from .family import FamilyAdapter
from .generate import check_generation, generate
from .measure import PeakMemory, out_of_memory_as_error, stop_between_layers
from .prepare import Prepared, inner_layer, prepare
from .report import provenance, stats
from .streaming import as_video, streams

__all__ = ["Prepared", "VideoLLM"]


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
        self._lock = threading.RLock()
        self._cache = FeatureCache(cache_entries, cache_bytes, self._lock)

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

    def sync(self) -> None:
        """Wait for the device (before each clock read: times are measured, not queued)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- encoding ----------------------------------------------------------------------------
    @property
    def cache_entries(self) -> int:
        return self._cache.entries

    @cache_entries.setter
    def cache_entries(self, value: int) -> None:
        self._cache.entries = value

    @property
    def cache_bytes(self) -> int:
        return self._cache.max_bytes

    @cache_bytes.setter
    def cache_bytes(self, value: int) -> None:
        self._cache.max_bytes = value

    def encode(self, video: Video) -> tuple[Encoded, bool]:
        """Encoded features of ``video`` and whether they came from the cache."""
        return self._cache.get(video.content_hash, lambda: self.adapter.encode(video))

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- answering ---------------------------------------------------------------------------
    def inner_layer(self, config: STCConfig) -> int | None:
        """Layer K this model uses for ``config`` (its method's default when unset); None when
        the method does nothing inside the LLM."""
        method = get_method(config.method)
        return inner_layer(self.adapter, method, config) if method.inner is not None else None

    def streams(self, video: Video | VideoStream, config: STCConfig | None) -> bool:
        """Whether ``answer`` encodes ``video`` in chunks into its method's streaming stage 1
        (`Method.compressor`): a method that streams (stc, stc-stage1, stc-st) on more than one
        window of frames (`stc.stream.WINDOW_FRAMES`), on a family whose frames encode
        independently (LLaVA-OneVision)."""
        return streams(self.adapter, video, config)

    @torch.no_grad()
    def prepare(
        self, video: Video | VideoStream, question: str, config: STCConfig | None = None, progress: Callable[[str], None] | None = None
    ) -> Prepared:
        """Everything before generation: encode (cached), stage 1, the prompt, stage 2's patch.

        The returned `Prepared` holds the generate kwargs and, when stage 2 runs, an
        `InnerPruning` to enter around the model call (``with prepared.stage2(): ...``).
        """
        return prepare(self, video, question, config, progress)

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
        choices: Sequence[str] | None = None,
    ) -> Answer:
        """Answer ``question`` about ``video`` (a `Video`, or a path sampled to ``num_frames``, or
        at ``fps`` frames per second up to ``max_frames``: see `stc.load_video`).

        Long videos: with a method that streams (stc, stc-stage1, stc-st) on more than
        `stc.stream.WINDOW_FRAMES` frames, LLaVA-OneVision encodes CHUNK_FRAMES frames at a time
        into the method's `StreamCompressor` (see `streams`), so memory holds one chunk's features
        and the budget, never every frame's features; given a path, frames are decoded chunk by
        chunk too (`stc.video.stream_video`), so no more than one chunk of decoded frames is held
        either. Give the budget in tokens with ``STCConfig(max_tokens=...)`` to pay the same cost
        for more frames.

        ``config=None`` runs the uncompressed baseline; an `STCConfig` runs stage 1 before the
        LLM and stage 2 at layer K (``inner_keep=1.0`` turns stage 2 off). ``progress`` gets the
        name of each step; ``max_seconds`` bounds generation time (the answer is cut there);
        ``should_stop()`` is asked after every new token, and True cuts the answer there too
        (e.g. its caller went away); before generation (decoding a path's frames, before each
        vision-encoder layer) True raises `stc.video.Cancelled` instead: there is no answer yet.
        ``choices`` constrains the answer to exactly one of these strings (greedy among them, then
        the end of the turn; `stc.models.generate.choice_constraint`): a multiple-choice answer
        that is always an option, whatever the text would have become; its length is then the
        choices' own (``max_new_tokens`` cannot cut one in half).
        Raises ValueError for bad input and `OutOfMemory` (the model stays usable) when the
        device runs out of memory.
        """
        check_generation(max_new_tokens, max_seconds)
        if choices is not None and (isinstance(choices, str) or not choices
                                    or not all(isinstance(c, str) and c.strip() for c in choices)):
            raise ValueError(f"choices must be a non-empty list of non-empty strings, got {choices!r}")
        step = progress or (lambda _msg: None)
        source = video

        def sampled(lazy: bool = True) -> Video | VideoStream:
            return as_video(self.adapter, source, num_frames, step, fps, max_frames, config, lazy=lazy,
                            should_stop=should_stop)

        video = first = sampled()

        def out_of_memory() -> str:
            return (f"out of {self.device.type.upper()} memory with {first.num_frames} frames on {self.model_id}; "
                    "try fewer frames or a lower retention")

        with out_of_memory_as_error(self._recover_memory, out_of_memory):
            with self._lock, PeakMemory(self.device) as memory:
                with stop_between_layers(self.adapter.vision_layers, should_stop):
                    try:
                        prep = self.prepare(video, question, config, progress=step)
                    except FramesChanged:  # the file had to be sampled again mid-stream: decode it whole
                        video = sampled(lazy=False)
                        prep = self.prepare(video, question, config, progress=step)
                step("generating")
                generated = generate(self.model, self.adapter.tokenizer, prep, max_new_tokens, max_seconds,
                                     should_stop, self.sync, choices=choices)
        answer_stats = stats(self, prep, generated, memory)
        notes = [video.note] if video.note else []
        if answer_stats.new_tokens < max_new_tokens:
            if max_seconds is not None and generated.seconds >= max_seconds:
                notes.append(f"generation stopped at the {max_seconds:g} s limit")
            elif should_stop is not None and should_stop():
                notes.append("generation stopped: cancelled")
        merged = prep.pruning.merged if prep.pruning is not None else None
        return Answer(text=generated.text, stats=answer_stats, provenance=provenance(prep.encoded, prep.kept, merged),
                      config=config, notes=notes)

    def _recover_memory(self) -> None:
        """After an out-of-memory error: drop cached features and free the allocator's cache."""
        self.clear_cache()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
