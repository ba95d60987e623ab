"""Same cost, more frames: one token budget, spent by stc on many frames and by the uncompressed
model on as many uniformly sampled frames as that budget buys.

The video is decoded once at the requested frame count. stc answers on every frame with
``STCConfig(max_tokens=budget)`` (LLaVA-OneVision streams more than 64 frames through
`stc.StreamCompressor`); the baseline answers on the largest uniform subset of those frames
whose visual tokens fit the same budget. The result is plain data (it crosses a process boundary
on ZeroGPU), with thumbnails small enough for hundreds of frames.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import STCConfig
from ..models import VideoLLM
from ..models.streaming import CHUNK_FRAMES
from ..results import Answer
from ..video import Video, load_video, sample_indices
from .loading import device_name, on_zero_gpu
from .present import flops_text
from .requests import MAX_NEW_TOKENS, whole_number
from .runner import Progress, _video_name, collect_notes, stop_check, thumbnails

BUDGET_TOKENS = (196, 8192, 2048)  # min, max, default: the token budget both answers share
LONG_FRAMES = (16, 512, 256)  # min, max (on a GPU), default
CPU_MAX_FRAMES = 128  # the most frames stc takes here without a GPU
ONE_PASS_MAX_FRAMES = 64  # families that encode every frame at once (Qwen2.5-VL): memory grows with frames
LLAVA_FRAME_TOKENS = 196  # LLaVA-OneVision at 384 px: a 14 x 14 grid of tokens per frame
THUMB_HEIGHT = 72  # thumbnails: 512 frames of 16:9 at 72 px are 14 MB
PER_PAGE = 64  # frames per page of the retention grid
MAX_PAGES = math.ceil(LONG_FRAMES[1] / PER_PAGE)


def on_gpu(llm: VideoLLM) -> bool:
    """Whether ``llm`` runs on a GPU (on ZeroGPU: always, inside the GPU call)."""
    return llm.device.type == "cuda" or on_zero_gpu()


def max_frames_for(llm: VideoLLM) -> int:
    """The most frames this mode gives ``llm`` here: 512 on a GPU, `CPU_MAX_FRAMES` on a CPU,
    at most `ONE_PASS_MAX_FRAMES` for a family that cannot encode in chunks."""
    limit = LONG_FRAMES[1] if on_gpu(llm) else CPU_MAX_FRAMES
    return limit if llm.adapter.streamable else min(limit, ONE_PASS_MAX_FRAMES)


def frames_text(gpu: bool) -> str:
    """The mode's frame limits as the page states them (``gpu``: whether this app has one)."""
    where = (f"up to {LONG_FRAMES[1]} frames on this GPU" if gpu else
             f"up to {LONG_FRAMES[1]} frames on a GPU; this app runs on a CPU, so up to {CPU_MAX_FRAMES} here")
    return (f"stc takes {where}. Qwen2.5-VL encodes every frame in one pass (its memory grows with the frames): "
            f"at most {ONE_PASS_MAX_FRAMES} frames.")


def check_long_controls(max_tokens, num_frames, max_new_tokens) -> tuple[int, int, int]:
    """(budget, frames, new tokens) of a "same cost" request, checked against the mode's ranges
    (the model's own frame limit: `check_long_frames`); one-line ValueErrors."""
    return (whole_number("token budget", max_tokens, BUDGET_TOKENS[0], BUDGET_TOKENS[1]),
            whole_number("frames", num_frames, LONG_FRAMES[0], LONG_FRAMES[1]),
            whole_number("max new tokens", max_new_tokens, MAX_NEW_TOKENS[0], MAX_NEW_TOKENS[1]))


def check_long_frames(llm: VideoLLM, num_frames: int) -> None:
    """Refuse more frames than `max_frames_for` ``llm`` here, saying why."""
    limit = max_frames_for(llm)
    if num_frames > limit:
        why = ("it encodes every frame in one pass" if not llm.adapter.streamable and limit == ONE_PASS_MAX_FRAMES
               else "this app has no GPU" if not on_gpu(llm) else "the GPU limit")
        raise ValueError(f"frames must be at most {limit} for {llm.model_id} here ({why}), got {num_frames}")


def visual_tokens(llm: VideoLLM, video: Video) -> int:
    """Visual tokens the uncompressed ``llm`` reads for ``video`` (nothing is encoded): the
    family's own count (`FamilyAdapter.visual_tokens`)."""
    return llm.adapter.visual_tokens(video)


def baseline_frames(llm: VideoLLM, video: Video, budget: int) -> tuple[np.ndarray, int]:
    """The uniform subset of ``video``'s frames the uncompressed model can read within ``budget``
    tokens: (indices into the video's frames, its visual tokens). The largest count that fits
    (at least one frame, even when one frame alone is over the budget)."""
    total = video.num_frames

    @functools.cache  # Qwen2.5-VL's count runs its video processor: each n once
    def cost(n: int) -> int:
        return visual_tokens(llm, video.take(sample_indices(total, n)))

    per_frame = llm.adapter.frame_tokens()
    if per_frame is not None:  # linear: a division, no search
        n = max(1, min(total, budget // max(1, per_frame)))
    else:  # tokens grow with the frames, not in proportion: the largest count that fits
        lo, hi = 1, total
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid - 1)
        n = lo
    index = sample_indices(total, n)
    return index, cost(n)


@dataclass
class SameCost:
    """stc on every frame and the baseline on the frames the same budget buys (picklable)."""

    model_id: str
    device: str
    is_tiny: bool
    question: str
    video_name: str
    max_tokens: int  # the budget both share
    stc: Answer  # every frame, STCConfig(max_tokens=max_tokens)
    baseline: Answer  # frames[baseline_index], uncompressed
    baseline_index: np.ndarray  # [n] int64, indices into frames
    frames: np.ndarray  # [T, h, w, 3] uint8 thumbnails of every sampled frame
    timestamps: np.ndarray  # [T] seconds
    streamed: bool  # stc encoded in chunks through StreamCompressor
    note: str | None
    seconds: float

    @property
    def answers(self) -> list[Answer]:
        """The baseline, then stc (the order of `stc.demo.cost_rows`)."""
        return [self.baseline, self.stc]

    @property
    def labels(self) -> list[str]:
        n, t = len(self.baseline_index), len(self.frames)
        return [f"baseline, {n} frame{'s' * (n != 1)}", f"stc {self.max_tokens:,} tokens, {t} frames"]

    @property
    def notes(self) -> list[str]:
        return collect_notes(self.note, self.answers)


def run_same_cost(
    llm: VideoLLM,
    video: Video | str | os.PathLike,
    question: str,
    *,
    max_tokens: int = BUDGET_TOKENS[2],
    num_frames: int = LONG_FRAMES[2],
    max_new_tokens: int = MAX_NEW_TOKENS[2],
    max_seconds: float | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_decode_seconds: float | None = None,
) -> SameCost:
    """Decode once at ``num_frames``; answer with stc at ``max_tokens`` on every frame, then
    uncompressed on the uniform subset that fits the same budget (`baseline_frames`).

    ``progress(fraction, description)``, ``max_seconds``, ``should_stop`` and
    ``max_decode_seconds`` as in `stc.demo.run_comparison`. Errors propagate (ValueError for
    bad input, `stc.OutOfMemory`).
    """
    report = progress or (lambda _fraction, _desc: None)

    check_stop = stop_check(should_stop)
    check_stop()
    start = time.perf_counter()
    name = _video_name(video)
    if not isinstance(video, Video):
        report(0.0, f"decoding {num_frames} frames")
        video = load_video(video, num_frames=num_frames, time_budget=max_decode_seconds, should_stop=should_stop)
    config = STCConfig(max_tokens=max_tokens)
    index, _ = baseline_frames(llm, video, max_tokens)
    streamed = llm.streams(video, config)
    runs = [("stc", config, video, 0.05), ("baseline", None, video.take(index), 0.8)]
    answers = []
    for label, run_config, frames, at in runs:
        check_stop()
        report(at, f"{label}: {frames.num_frames} frames")
        answers.append(llm.answer(frames, question, config=run_config, max_new_tokens=max_new_tokens,
                                  max_seconds=max_seconds, should_stop=should_stop,
                                  progress=lambda what, label=label, at=at: report(at, f"{label}: {what}")))
    check_stop()
    report(1.0, "done")
    return SameCost(model_id=llm.model_id, device=device_name(llm), is_tiny=llm.is_tiny, question=question,
                    video_name=name, max_tokens=max_tokens, stc=answers[0], baseline=answers[1],
                    baseline_index=np.asarray(index, dtype=np.int64),
                    frames=thumbnails(video.frames, THUMB_HEIGHT),
                    timestamps=np.asarray(video.timestamps, dtype=np.float64), streamed=streamed, note=video.note,
                    seconds=time.perf_counter() - start)


def check_page(page, pages: int) -> int:
    """``page`` (1-based) of a grid of ``pages`` pages, as an int; one-line ValueError otherwise."""
    if isinstance(page, bool) or not isinstance(page, (int, float)) or page != int(page) or not 1 <= page <= pages:
        raise ValueError(f"page must be a whole number in [1, {pages}], got {page!r}")
    return int(page)


def page_title(result: SameCost, page: int, pages: int, start: int, stop: int) -> str:
    """The title of page ``page`` of stc's retention grid, frames [start, stop)."""
    return f"{result.labels[1]} · frames {start + 1}-{stop} (page {page} of {pages})"


def timeline_title(result: SameCost) -> str:
    """The title of the strip of every frame's tokens (`stc.viz.tokens_timeline`)."""
    s = result.stc.stats
    after = f", {s.visual_tokens_stage2:,} after layer {s.inner_layer}: drawn" if s.inner_layer is not None else ""
    return (f"tokens each of {len(result.frames)} frames sends to the LLM with stc "
            f"({s.visual_tokens_stage1:,} enter it{after})")


def same_cost_details(result: SameCost) -> str:
    """Markdown under the results: what each answer read and what it cost."""
    b, s = result.baseline.stats, result.stc.stats
    counts = np.asarray(result.stc.provenance.tokens_per_frame)
    frames, n = len(result.frames), len(result.baseline_index)
    per = b.visual_tokens_stage1 / max(n, 1)
    how = (f"encoded {CHUNK_FRAMES} at a time into `stc.StreamCompressor`" if result.streamed
           else "encoded in one pass")
    lines = [
        f"**Same cost, more frames** on `{result.model_id}` ({result.device}): a budget of "
        f"{result.max_tokens:,} visual tokens. stc read all {frames} frames ({s.visual_tokens:,} tokens, {how}) "
        f"and sent {s.visual_tokens_stage1:,} to the LLM; {int((counts == 0).sum())} of {len(counts)} frames "
        f"send none. The uncompressed model read the {n} uniformly sampled frame{'s' * (n != 1)} the same budget "
        f"buys ({b.visual_tokens_stage1:,} tokens, {per:.0f} per frame).",
        f"LLM FLOPs: baseline {flops_text(b.flops)}, stc {flops_text(s.flops)}. Total {result.seconds:.1f} s.",
        f"`{result.video_name}` · “{result.question if len(result.question) <= 160 else result.question[:159] + '…'}”",
    ]
    lines.extend(f"Note: {note}." for note in result.notes)
    return "\n\n".join(lines)

