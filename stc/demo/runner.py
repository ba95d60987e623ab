"""The comparison runner: the baseline and any number of method runs, on one model, one video.

The video is decoded once, every run answers on ONE model instance, and every run after the
first takes the encoded frames from the model's cache (`VideoLLM.encode`), so the vision encoder
runs once. The page's "baseline vs one method" is the case of one run; "compare methods" is the
case of several. Everything returned is plain data (numpy arrays, dataclasses): it crosses a
process boundary on ZeroGPU.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import STCConfig
from ..models import VideoLLM
from ..results import Answer
from ..video import Cancelled, Video, load_video
from .loading import device_name
from .requests import FRAMES, MAX_NEW_TOKENS

Progress = Callable[[float, str], None]


def budget_text(config: STCConfig) -> str:
    """A config's budget in words: '2%' (a retention) or '2,048 tokens' (``max_tokens``)."""
    return f"{config.max_tokens:,} tokens" if config.max_tokens is not None else f"{config.retention * 100:g}%"


def stop_check(should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    """A function that raises `Cancelled` (`stc.video.Cancelled`: decoding and encoding raise the
    same) when ``should_stop()`` says so (never when None)."""

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled("cancelled: the request's client went away")

    return check_stop


def collect_notes(note: str | None, answers) -> list[str]:
    """What the visitor should know, once each: the video's ``note``, then every answer's."""
    notes = [note] if note else []
    for answer in answers:
        notes.extend(answer.notes)
    return list(dict.fromkeys(notes))


def run_label(config: STCConfig | None) -> str:
    """'stc 2%' or 'stc 2,048 tokens' — a run's name in tables, charts and progress; 'baseline'
    without a config."""
    return "baseline" if config is None else f"{config.method} {budget_text(config)}"


@dataclass
class Comparison:
    """The baseline and the runs' answers to one question about one video (picklable).

    runs[i] answered with its own ``config``; every answer used the same model instance and the
    same encoded frames.
    """

    model_id: str
    device: str
    is_tiny: bool
    question: str
    video_name: str  # the file's name, for the text shown with the results
    baseline: Answer
    runs: list[Answer]
    frames: np.ndarray  # [T, h, w, 3] uint8 thumbnails of the sampled frames
    timestamps: np.ndarray  # [T] seconds
    note: str | None  # e.g. fewer frames in the file than asked
    seconds: float  # wall time of the whole comparison

    @property
    def compressed(self) -> Answer:
        """The run of a one-method comparison."""
        if len(self.runs) != 1:
            raise ValueError(f"this comparison has {len(self.runs)} runs; read .runs")
        return self.runs[0]

    @property
    def answers(self) -> list[Answer]:
        """The baseline, then every run."""
        return [self.baseline, *self.runs]

    @property
    def labels(self) -> list[str]:
        return [run_label(a.config) for a in self.answers]

    @property
    def notes(self) -> list[str]:
        """Everything the visitor should know, once each (the video's note, time limits)."""
        return collect_notes(self.note, self.answers)


def _video_name(video) -> str:
    if isinstance(video, Video):
        return Path(video.source).name if video.source else "frames in memory"
    return Path(video).name


def thumbnails(frames: np.ndarray, height: int = 144) -> np.ndarray:
    """[T, height, w, 3] uint8 copies of ``frames`` for drawing (aspect ratio kept)."""
    from PIL import Image

    t, h, w, _ = frames.shape
    if h <= height:
        return np.ascontiguousarray(frames)
    width = max(1, round(w * height / h))
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def run_comparison(
    llm: VideoLLM,
    video: Video | str | os.PathLike,
    question: str,
    configs,
    *,
    num_frames: int = FRAMES[2],
    max_new_tokens: int = MAX_NEW_TOKENS[2],
    max_seconds: float | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_decode_seconds: float | None = None,
) -> Comparison:
    """The baseline and one run per config on one model: decoded once, encoded once.

    ``configs``: a non-empty sequence of `STCConfig`. ``progress(fraction, description)`` is
    called at each step (decoding, encoding, compressing, each generation); ``max_seconds``
    bounds each generation and ``max_decode_seconds`` decoding (`stc.video.DecodeTimeout`, a
    ValueError, past it); ``should_stop()`` true (checked as frames decode, in the vision
    encoder's layers, between steps and after every generated token) gives up with `Cancelled`.
    Errors propagate as raised (ValueError for bad input, `stc.OutOfMemory`).
    """
    configs = list(configs)
    if not configs or not all(isinstance(c, STCConfig) for c in configs):
        raise ValueError("configs must be a non-empty sequence of stc.STCConfig")
    report = progress or (lambda _fraction, _desc: None)

    check_stop = stop_check(should_stop)
    check_stop()
    start = time.perf_counter()
    video_name = _video_name(video)
    if not isinstance(video, Video):
        report(0.0, "decoding the video")
        video = load_video(Path(video), num_frames=num_frames, time_budget=max_decode_seconds,
                           should_stop=should_stop)
    plan = [None, *configs]
    total = 1 + 3 * len(plan)
    answers = []
    for i, config in enumerate(plan):
        label = run_label(config) if len(configs) > 1 or config is None else "compressed"

        def step(what: str, i=i, label=label) -> None:
            offset = {"encoding video": 1, "preparing prompt": 2, "compressing": 2, "generating": 3}.get(what)
            if offset is not None:
                report((3 * i + offset) / total, f"{label}: {what} — run {i + 1} of {len(plan)}")

        check_stop()
        answers.append(llm.answer(video, question, config=config, max_new_tokens=max_new_tokens,
                                  max_seconds=max_seconds, progress=step, should_stop=should_stop))
    check_stop()
    report(1.0, "done")
    return Comparison(
        model_id=llm.model_id,
        device=device_name(llm),
        is_tiny=llm.is_tiny,
        question=question,
        video_name=video_name,
        baseline=answers[0],
        runs=answers[1:],
        frames=thumbnails(video.frames),
        timestamps=np.asarray(video.timestamps, dtype=np.float64),
        note=video.note,
        seconds=time.perf_counter() - start,
    )


def compare(llm: VideoLLM, video, question: str, config: STCConfig, **kwargs) -> Comparison:
    """The baseline and ``config`` (`run_comparison` with one run)."""
    if not isinstance(config, STCConfig):
        raise ValueError(f"config must be an stc.STCConfig, got {type(config).__name__}")
    return run_comparison(llm, video, question, [config], **kwargs)
