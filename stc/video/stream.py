"""`load_video` and `stream_video`: a request checked and its header read before any decoding,
a reader chosen (decord when it may, else PyAV), and restarted when it must sample again
(`VideoStream`)."""

from __future__ import annotations

import math
import numbers
import os
from typing import Callable

import numpy as np

from .errors import FramesChanged, fail
from .frames import MAX_FRAMES, Video, check_num_frames
from .guard import Guard, checked_guard
from .header import Header, check_file, read_header
from .readers import (
    SEQUENTIAL_MAX_FRAMES,
    DecordFailed,
    Shortfall,
    decord_available,
    read_decord,
    read_seeking,
    read_sequential,
)
from .sizing import auto_side, check_budget, working_size


def _request(path, num_frames, fps, max_frames, backend, max_side):
    """Check a request and read the header: (path, T asked, header, working size), the budget
    checked before any decoding (again in each reader once the frame count is exact)."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or not 1 <= max_frames <= MAX_FRAMES:
        raise ValueError(f"max_frames must be an int in [1, {MAX_FRAMES}], got {max_frames!r}")
    num_frames = check_num_frames(num_frames)
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or not fps > 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
    elif num_frames > max_frames:
        raise ValueError(f"num_frames must be an int in [1, {max_frames}] (max_frames), got {num_frames!r}")
    auto = max_side == "auto"
    if not auto and max_side is not None and (
        isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16
    ):
        raise ValueError(f"max_side must be an integer >= 16, None or 'auto', got {max_side!r}")
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    if backend == "decord" and not decord_available():
        raise ValueError("backend='decord' asked for, but decord is not installed")
    path = check_file(path)
    # Header checks by PyAV for every backend, so errors read the same whichever decodes.
    probe = read_header(path)
    if fps is not None:
        length = probe.duration or (probe.declared_frames / probe.fps if probe.fps else 0.0)
        num_frames = max(1, min(max_frames, int(round(length * fps))))
    count = min(num_frames, probe.declared_frames or num_frames)
    if auto:
        max_side = auto_side(probe.width, probe.height, count)
    size = working_size(probe.width, probe.height, max_side)
    check_budget(path, probe, count, size)
    return path, num_frames, probe, size


class VideoStream:
    """The frames `load_video` returns, decoded ``chunk`` at a time (see `stream_video`).

    Known before decoding: ``num_frames`` (T, as planned), ``total_frames``, ``fps``,
    ``height``, ``width``, ``source`` and ``backend``. Iterating (once) gives `Video`s of at
    most ``chunk`` consecutive sampled frames, each with its own timestamps and frame indices
    (``duration`` is the header's); only one chunk is decoded at a time. Once iterated,
    ``timestamps``, ``frame_indices``, ``duration`` and ``note`` describe every frame handed
    out, as `load_video` would; their count can fall below the planned ``num_frames`` where a
    file repeats timestamps. A reader that must resample after handing out chunks (fewer
    decodable frames than packets, decord failing mid-file) raises `FramesChanged`.
    ``read()`` gives the whole `Video` instead (that is `load_video`). ``time_budget`` and
    ``should_stop`` (see `stream_video`) hold while frames decode, not while a consumer works
    between chunks.
    """

    def __init__(self, path: str, num_frames: int, probe: Header, size: tuple[int, int], backend: str, chunk: int,
                 guard: Guard | None = None):
        self.source, self.chunk = path, chunk
        self._asked, self._probe, self._size, self._backend = num_frames, probe, size, backend
        self._guard = guard or Guard(path)
        # decord cannot be interrupted inside a call: a guarded read is PyAV's unless decord is named.
        self._decord = backend == "decord" or (backend == "auto" and not self._guard.active and decord_available())
        self._reader, self._plan, self.backend = self._start()
        self._used = False
        self.timestamps = self.frame_indices = self.duration = self.note = None

    def _start(self, total: int | None = None):
        """(reader, its plan, backend): decord when asked for and able, else PyAV."""
        path, probe, guard = self.source, self._probe, self._guard
        args = (path, self._asked, probe, self._size, self.chunk)
        guard.kept = 0
        guard.resume()
        try:
            if self._decord:
                reader = read_decord(*args, guard=guard)
                plan = next(reader)
                if plan is not None:
                    return reader, plan, "decord"
                if self._backend == "decord":
                    raise fail(path, "decord could not decode it")
            long = probe.timed and probe.fps and probe.duration and probe.declared_frames > SEQUENTIAL_MAX_FRAMES
            reader = read_seeking(*args, guard=guard) if long else read_sequential(*args, total=total, guard=guard)
            return reader, next(reader), "pyav"
        finally:
            guard.pause()

    def _chunks(self):
        """The reader's chunks, its guard's clock running only while the reader does."""
        while True:
            self._guard.resume()
            try:
                chunk = next(self._reader)
            except StopIteration:
                return
            finally:
                self._guard.pause()
            yield chunk

    def _restart(self, why: Exception) -> None:
        """Start again after a reader's `Shortfall` (over the frames that decode) or
        `DecordFailed` (with PyAV)."""
        if isinstance(why, DecordFailed):
            if self._backend == "decord":
                raise fail(self.source, "decord could not decode it") from None
            self._decord = False
        total = why.decoded if isinstance(why, Shortfall) else None
        self._reader, self._plan, self.backend = self._start(total)

    def _claim(self) -> None:
        if self._used:
            raise ValueError("a VideoStream is read once")
        self._used = True

    @property
    def num_frames(self) -> int:
        return self._plan.count

    @property
    def total_frames(self) -> int:
        return self._plan.total

    @property
    def fps(self) -> float:
        return self._plan.fps

    @property
    def height(self) -> int:
        return self._size[1]

    @property
    def width(self) -> int:
        return self._size[0]

    def _header_duration(self) -> float:
        return float(self._probe.duration or self.total_frames / self.fps)

    def _finish(self, timestamps: list, indices: list) -> None:
        self.timestamps, self.frame_indices = np.concatenate(timestamps), np.concatenate(indices)
        count, total = len(self.timestamps), self.total_frames
        if count < self._asked:
            self.note = f"video has {total} frame{'s' * (total != 1)}; sampled {count} of {self._asked} asked"
        # Headers can understate the length by a frame; the sampled frames must lie inside it.
        self.duration = max(self._header_duration(), float(self.timestamps[-1]) + 1.0 / self.fps)

    def __iter__(self):
        self._claim()
        timestamps, indices = [], []
        while True:
            try:
                for frames, times, index in self._chunks():
                    timestamps.append(times)
                    indices.append(index)
                    yield Video(frames=frames, timestamps=times, fps=self.fps, duration=self._header_duration(),
                                source=self.source, frame_indices=index, total_frames=self.total_frames,
                                backend=self.backend)
                break
            except (Shortfall, DecordFailed) as why:
                if timestamps:
                    raise FramesChanged(
                        f"cannot stream video {self.source}: its frames had to be sampled again after "
                        f"{sum(map(len, timestamps))} were handed out; read it with load_video"
                    ) from None
                self._restart(why)
        self._finish(timestamps, indices)

    def read(self) -> Video:
        """Every sampled frame as one `Video` (what `load_video` returns)."""
        self._claim()
        while True:
            frames = np.empty((self.num_frames, self.height, self.width, 3), dtype=np.uint8)
            timestamps, indices, count = [], [], 0
            try:
                for part, times, index in self._chunks():
                    frames[count : count + len(part)] = part
                    count += len(part)
                    timestamps.append(times)
                    indices.append(index)
                break
            except (Shortfall, DecordFailed) as why:
                self._restart(why)
        self._finish(timestamps, indices)
        return Video(
            frames=frames[:count] if count < len(frames) else frames,
            timestamps=self.timestamps,
            fps=self.fps,
            duration=self.duration,
            source=self.source,
            frame_indices=self.frame_indices,
            total_frames=int(self.total_frames),
            note=self.note,
            backend=self.backend,
        )

    def __repr__(self) -> str:
        return (f"VideoStream(T={self.num_frames}, {self.height}x{self.width}, chunk={self.chunk}, "
                f"source={self.source!r}, backend={self.backend!r})")


def stream_video(
    path: str | os.PathLike,
    num_frames: int = 32,
    *,
    fps: float | None = None,
    max_frames: int = MAX_FRAMES,
    chunk: int = 16,
    backend: str = "auto",
    max_side: int | str | None = "auto",
    time_budget: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VideoStream:
    """The frames of `load_video` (same arguments, same frames, timestamps and checks),
    decoded ``chunk`` frames at a time as they are iterated: a `VideoStream`.

    For consumers that use frames chunk by chunk (an encoder feeding `stc.StreamCompressor`):
    memory then holds one chunk of frames, whatever T. The header, the request and the pixel
    budget are checked here, before any frame is decoded. ``time_budget`` counts the seconds
    spent decoding (not the consumer's time between chunks); ``should_stop`` as in `load_video`.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    guard = checked_guard(path, time_budget, should_stop)
    path, num_frames, probe, size = _request(path, num_frames, fps, max_frames, backend, max_side)
    guard.path = path
    return VideoStream(path, num_frames, probe, size, backend, int(chunk), guard)


def load_video(
    path: str | os.PathLike,
    num_frames: int = 32,
    *,
    fps: float | None = None,
    max_frames: int = MAX_FRAMES,
    backend: str = "auto",
    max_side: int | str | None = "auto",
    time_budget: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Video:
    """Read frames spread uniformly over a video file (see `sample_indices`).

    Args:
        path: a video file (anything FFmpeg reads: mp4, avi, mkv, webm, mov, ...).
        num_frames: T, an int in [1, 1024]. A video with fewer frames gives all of them and
            says so in `Video.note`.
        fps: when given, replaces ``num_frames``: this many frames per second of video
            (T = round(duration x fps), at least 1), at most ``max_frames``.
        max_frames: the cap on T, an int in [1, 1024] (for ``fps``; ``num_frames`` above it
            is refused).
        backend: "auto" (decord if importable, else PyAV), "decord" or "pyav".
        max_side: frames are scaled down (aspect kept) so the longer side is at most this,
            by either backend as each frame is decoded; None keeps the decoded size. "auto"
            (default): 1344 (above every supported model's input size, and 4K frames never sit
            in memory at full size as RGB), lowered for many frames so they fit MAX_PIXELS,
            but not below 384 (1,024 frames of a 16:9 clip at 384 px: 85 megapixels).
        time_budget: seconds decoding may take (None: no limit), checked after every decoded
            frame: past it, `DecodeTimeout` (a ValueError) says how far it got. Long files
            cost at most one pass however their keyframes lie (see `read_seeking`), but
            that pass can still be long (hours of large frames).
        should_stop: a callable asked while frames decode (at most every 50 ms); True gives
            up with `Cancelled` (a RuntimeError). With either guard, backend "auto" reads
            with PyAV (decord cannot be interrupted inside a call); "decord" named reads one
            frame per call and checks between calls.
    Returns:
        A `Video` with frames uint8 [T, H, W, 3] and timestamps float [T] in seconds.
    Raises:
        ValueError (one line) for a bad num_frames/fps/max_frames/backend/time_budget, a
        missing, empty, non-video, audio-only, corrupt or truncated file, one whose length
        cannot be measured (see `probe`), frames over MAX_FRAME_PIXELS, sampled frames over
        MAX_PIXELS, or decoding past ``time_budget`` (`DecodeTimeout`); `Cancelled` when
        ``should_stop()`` says so.
    """
    guard = checked_guard(path, time_budget, should_stop)
    path, num_frames, probe, size = _request(path, num_frames, fps, max_frames, backend, max_side)
    guard.path = path
    return VideoStream(path, num_frames, probe, size, backend, 64, guard).read()
