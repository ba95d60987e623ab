"""Decoding and uniform frame sampling: a video file (or frames in memory) -> `Video`.

Everything downstream (encoders, compression, caching, the app) starts from a `Video`: uint8
RGB frames with the timestamps they were taken at, where they came from, and a note when the
file could not give what was asked. Sampling is uniform over the whole video by one rule
(`sample_indices`). decord reads frames when it is importable, PyAV otherwise; PyAV always
validates the file first, so a bad file gets the same one-line `ValueError` either way. Long
files are read by seeking, guided by the file's keyframe index: PyAV seeks only where a
keyframe lies past the last frame it decoded and decodes forward otherwise, so no frame is
decoded twice and a file with one keyframe costs one pass, never one pass per sampled frame.
Decoding can be bounded in time (``time_budget``: a one-line `DecodeTimeout` past it) and
cancelled (``should_stop``: `Cancelled`), both checked after every decoded frame; such a
guarded read is PyAV's (decord cannot be interrupted inside a call) unless decord is asked for
by name. Memory is bounded before anything is decoded: both backends
scale each frame to the working size (longer side `max_side`) as it leaves the decoder, in
uint8; frames over `MAX_FRAME_PIXELS` and requests over `MAX_PIXELS` (frames x working
pixels) are refused; huge frames get fewer decoder threads. `probe` reads the header
(duration, frame rate, size) for limits checked before any decoding; where the header has no
plausible duration it counts packets, bounded in time, and refuses a file it cannot measure.
Each reader is a generator of chunks of sampled frames: `stream_video` hands them on one at a
time (a consumer holds one chunk), `load_video` concatenates them; the frames are the same.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "MAX_FRAMES", "MAX_SIDE", "MIN_AUTO_SIDE", "Cancelled", "DecodeTimeout", "FramesChanged", "Video", "VideoInfo",
    "VideoStream", "load_video", "probe", "sample_indices", "stream_video",
]

MAX_FRAMES = 1024
# Longer side of decoded frames (LLaVA-OV resizes to 384; Qwen2.5-VL's default video budget
# is ~600k pixels per frame, about 1000 x 600): 1344 loses nothing any model sees.
MAX_SIDE = 1344
# With max_side="auto", many frames are decoded smaller so that they fit MAX_PIXELS, but never
# below this side (LLaVA-OneVision's input size): 1,024 16:9 frames at 384 px are 85 megapixels.
MIN_AUTO_SIDE = 384

# Up to this many frames (about 20 s at 30 fps) a clip is decoded front to back, which is
# exact and cheap; longer ones are read by seeking.
_SEQUENTIAL_MAX_FRAMES = 600
# In the seeking reader, a target closer than this to the last decoded frame is reached by
# decoding forward without asking the index; further ones are sought only when the keyframe a
# seek would land on lies past the last decoded frame (seeking never decodes a frame twice).
_SEEK_GAP_SECONDS = 2.0
# should_stop() is asked at most this often while frames decode (the time budget is checked
# after every frame).
_STOP_POLL_SECONDS = 0.05
# A file whose decodable frames fall short of its declared frame count by more than this is
# reported as truncated rather than silently sampled from its first part.
_MIN_DECODABLE_FRACTION = 0.9
# content_hash reads at most this many bytes of frames (row-strided beyond it).
_HASH_MAX_BYTES = 32 * 2**20

# The memory budget, checked before the first frame is decoded. A frame larger than
# MAX_FRAME_PIXELS (8192 x 8192) is never decoded (the decoder itself is told, so a header
# that understates the size does not get past it); the sampled frames at working size may
# hold at most MAX_PIXELS pixels (768 MiB of RGB): 148 square or 264 16:9 frames at 1344 px.
MAX_FRAME_PIXELS = 2**26
MAX_PIXELS = 2**28
# A frame-threaded decoder holds about one decoded frame per thread: threads are capped so
# that this many bytes of them suffice (8000 x 8000 frames get 2 threads, 4K ones all).
_DECODER_BYTES = 2**29
_AUTO_THREADS = 16  # FFmpeg's most automatic decoder threads
# Frame threads cost a hand-off per frame; below this size that costs more than they save
# (100,000 frames of 16x16: 5.2 s threaded, 2.3 s on one thread; 480x270 still gains).
_THREADED_MIN_PIXELS = 2**16
# A header without a plausible duration: the length is measured by reading packets (no
# decoding) for at most this long; a file that takes longer is refused.
_LENGTH_SCAN_SECONDS = 5.0
_MAX_PLAUSIBLE_SECONDS = 30 * 24 * 3600.0


def sample_indices(total: int, num_frames: int) -> np.ndarray:
    """Indices of `num_frames` frames spread uniformly over `total`: centres of equal segments.

    idx_i = floor((i + 0.5) * total / num_frames), i = 0..num_frames-1 — the middle frame of each
    of num_frames equal spans, so both ends are treated alike. Distinct whenever
    total >= num_frames; if total < num_frames all `total` frames are returned.

    Returns: int64 [min(total, num_frames)].
    """
    if total <= num_frames:
        return np.arange(total, dtype=np.int64)
    return np.floor((np.arange(num_frames) + 0.5) * total / num_frames).astype(np.int64)


def _check_num_frames(num_frames) -> int:
    if (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, numbers.Integral)
        or not 1 <= num_frames <= MAX_FRAMES
    ):
        raise ValueError(f"num_frames must be an int in [1, {MAX_FRAMES}], got {num_frames!r}")
    return int(num_frames)


@dataclass(eq=False, repr=False)
class Video:
    """Sampled frames of one video.

    Attributes:
        frames: uint8 [T, H, W, 3] RGB.
        timestamps: float64 [T], seconds from the start of the video, increasing.
        fps: frame rate of the source (frames per second).
        duration: length of the source in seconds.
        source: the file path, or None for frames made in memory.
        frame_indices: int64 [T], index of each frame in the source.
        total_frames: number of frames in the source.
        note: why fewer frames than asked came back, else None.
        backend: "decord", "pyav" or "memory".
    """

    frames: np.ndarray
    timestamps: np.ndarray
    fps: float
    duration: float
    source: str | None = None
    frame_indices: np.ndarray | None = None
    total_frames: int | None = None
    note: str | None = None
    backend: str = "memory"

    def __post_init__(self):
        frames = np.asarray(self.frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(
                f"frames must be a non-empty uint8 array [T, H, W, 3], got {frames.dtype} {list(frames.shape)}"
            )
        timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if timestamps.shape != (len(frames),):
            raise ValueError(f"timestamps must have shape [{len(frames)}], got {list(timestamps.shape)}")
        # Kept writable: torch.from_numpy (inside every transformers video processor) warns on
        # read-only arrays. content_hash is therefore computed afresh, never cached.
        self.frames = frames
        self.timestamps = timestamps
        if self.frame_indices is None:
            self.frame_indices = np.arange(len(frames), dtype=np.int64)
        else:
            self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64)
        if self.total_frames is None:
            self.total_frames = len(frames)

    @property
    def num_frames(self) -> int:
        """T, the number of sampled frames."""
        return len(self.frames)

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def content_hash(self) -> str:
        """Hex blake2b digest of the frames' shape and pixels, for feature caches.

        Frames up to 32 MiB are hashed whole (a few ms for 32 frames at 384x384); larger ones
        by every k-th row of every frame (k chosen to read about 32 MiB, tens of ms), so two
        different natural videos still cannot collide in practice. Computed on each access.
        """
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr((self.frames.shape, str(self.frames.dtype))).encode())
        stride = max(1, math.ceil(self.frames.nbytes / _HASH_MAX_BYTES))
        digest.update(np.ascontiguousarray(self.frames[:, ::stride]).data)
        return digest.hexdigest()

    def to_video_metadata(self) -> dict:
        """The frames' provenance as transformers' `VideoMetadata` fields.

        Pass it as `video_metadata=` to a processor with the frames so that models which
        place frames in time (Qwen2.5-VL's temporal positions) see the true sampling rate.
        """
        return {
            "total_num_frames": int(self.total_frames),
            "fps": float(self.fps),
            "duration": float(self.duration),
            "frames_indices": self.frame_indices.tolist(),
            "height": self.height,
            "width": self.width,
            "video_backend": self.backend,
        }

    def take(self, index) -> "Video":
        """The frames ``index`` selects (a slice: a view, no pixels copied; an int array: a
        copy of those frames), with their timestamps and source indices."""
        return Video(frames=self.frames[index], timestamps=self.timestamps[index], fps=self.fps,
                     duration=self.duration, source=self.source, frame_indices=self.frame_indices[index],
                     total_frames=self.total_frames, backend=self.backend)

    @classmethod
    def from_frames(cls, frames, *, fps: float = 1.0, timestamps=None, source: str | None = None) -> Video:
        """A Video of frames already in memory.

        Args:
            frames: uint8 [T, H, W, 3] array (or a list of [H, W, 3] frames).
            fps: the rate the frames were taken at; timestamps default to arange(T) / fps.
            timestamps: optional float [T] seconds, increasing.
        """
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not fps > 0 or not math.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        frames = np.stack(frames) if isinstance(frames, (list, tuple)) else np.asarray(frames)
        count = len(frames)
        if timestamps is None:
            timestamps = np.arange(count, dtype=np.float64) / fps
        return cls(
            frames=frames,
            timestamps=timestamps,
            fps=float(fps),
            duration=count / fps,
            source=source,
            frame_indices=np.arange(count, dtype=np.int64),
            total_frames=count,
            backend="memory",
        )

    def __repr__(self) -> str:
        note = f", note={self.note!r}" if self.note else ""
        return (
            f"Video(T={self.num_frames}, {self.height}x{self.width}, fps={self.fps:.3g}, "
            f"duration={self.duration:.2f}s, source={self.source!r}, backend={self.backend!r}{note})"
        )


# --------------------------------------------------------------------------------------------
# Reading files.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    """What PyAV's header parse (and, where the header falls short, a packet count) says about
    the first video stream."""

    fps: float | None
    duration: float | None
    declared_frames: int  # 0 when unknown
    start: float  # seconds of the first frame's pts
    width: int = 0
    height: int = 0
    counted: int | None = None  # exact packet count, when the packets were read
    timed: bool = True  # frames carry timestamps (seeking by time works)


def _fail(path: str, why: str) -> ValueError:
    return ValueError(f"cannot read video {path}: {why}")


def _open(path: str):
    import av

    try:
        return av.open(path)
    except av.error.FFmpegError as err:
        raise _fail(path, f"not a video file, or corrupt/truncated ({err.strerror})") from None


def _video_stream(container, path: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise _fail(path, f"no video stream (has: {', '.join(kinds)})")
    return container.streams.video[0]


def _plausible(duration: float | None, fps: float | None, frames: int) -> bool:
    """A header duration to trust: finite, positive, not absurd, and not contradicted by the
    header's own frame count (5 frames said to last two hours, or 10^6 frames in 2 s)."""
    if duration is None or not math.isfinite(duration) or not 0 < duration <= _MAX_PLAUSIBLE_SECONDS:
        return False
    if frames and fps:
        expected = duration * fps
        return abs(frames - expected) <= max(2.0, 0.5 * max(frames, expected))
    return True


def _count_packets(container, stream, path: str, start: float) -> tuple[int, float | None]:
    """(packets with data, end of the last one in seconds from `start` or None when packets
    carry no timestamps), reading packets without decoding them for at most
    _LENGTH_SCAN_SECONDS; a corrupt tail ends the count."""
    import av

    deadline = time.monotonic() + _LENGTH_SCAN_SECONDS
    tb = stream.time_base
    count, end = 0, None
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
                if packet.pts is not None and tb is not None:
                    stamp = float((packet.pts + (packet.duration or 0)) * tb) - start
                    end = stamp if end is None else max(end, stamp)
            if count % 256 == 0 and time.monotonic() > deadline:
                so_far = f", {end:.0f} s" if end is not None else ""
                raise _fail(
                    path,
                    f"no usable duration in its header, and its length could not be measured within "
                    f"{_LENGTH_SCAN_SECONDS:g} s ({count} frames{so_far} read so far)",
                )
    except av.error.FFmpegError:
        pass
    return count, end


def _first_frame_size(path: str) -> tuple[int, int]:
    """Frame size from the first decoded frame, for a header that does not say."""
    import av

    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}
        try:
            for frame in container.decode(stream):
                return frame.width, frame.height
        except av.error.FFmpegError as err:
            raise _fail(path, f"frame size is not in its header and no frame decodes ({err.strerror})") from None
    raise _fail(path, "frame size is not in its header and no frame decodes")


def _probe(stream, container, path: str) -> _Probe:
    """The header's duration, rate, frame count and size; where the duration is missing or
    implausible (a live-mode Matroska, a raw H.264 stream), packets are counted instead."""
    average = float(stream.average_rate) if stream.average_rate else None
    guessed = float(stream.guessed_rate) if stream.guessed_rate else None
    fps = average or guessed
    tb = stream.time_base
    duration = None
    if stream.duration is not None and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    start = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    declared = int(stream.frames or 0)
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    counted, timed = None, True
    if not _plausible(duration, fps, declared):
        counted, end = _count_packets(container, stream, path, start)
        if counted == 0:
            raise _fail(path, "no video frames (corrupt or truncated file)")
        declared, timed = counted, end is not None and end > 0
        # Raw streams get a 25 fps placeholder as average rate; the guessed rate comes from
        # the timestamps or the stream's own timing information.
        fps = guessed or average or (counted / end if timed else None)
        if not fps:
            raise _fail(path, "neither its header nor its packets say how long it is")
        # The last timestamp, or for a stream without any (raw H.264) the count at its rate.
        duration = end if timed else counted / fps
    if not declared and fps and duration:
        declared = int(round(duration * fps))
    if width <= 0 or height <= 0:
        width, height = _first_frame_size(path)
    return _Probe(fps=fps, duration=duration, declared_frames=declared, start=start, width=width, height=height,
                  counted=counted, timed=timed)


def _header(path: str) -> _Probe:
    """`_probe` of the file at ``path``, remembered while the file is unchanged: an app checks a
    video's header (`probe`) and then loads it, and a header-less file's packet count (up to
    5 s) should be paid once, not twice."""
    stat = os.stat(path)
    return _remembered_header(path, stat.st_size, stat.st_mtime_ns, _LENGTH_SCAN_SECONDS)


@lru_cache(maxsize=64)
def _remembered_header(path: str, size: int, mtime_ns: int, scan_seconds: float) -> _Probe:
    # scan_seconds: part of the key, so a changed scan bound measures again
    with _open(path) as container:
        return _probe(_video_stream(container, path), container, path)


def _working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) of frames as returned: the longer side scaled down to ``max_side``
    (aspect kept, even sizes), the decoded size when it already fits."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _auto_side(width: int, height: int, count: int) -> int:
    """The longest side in [MIN_AUTO_SIDE, MAX_SIDE] at which ``count`` frames fit MAX_PIXELS
    (MIN_AUTO_SIDE when none does: the budget check then refuses)."""
    side = MAX_SIDE
    while side > MIN_AUTO_SIDE:
        w, h = _working_size(width, height, side)
        if count * w * h <= MAX_PIXELS:
            break
        side = max(MIN_AUTO_SIDE, side - 32)
    return side


def _check_budget(path: str, probe: _Probe, count: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding, a frame larger than MAX_FRAME_PIXELS or `count` frames of
    `size` (working size) over MAX_PIXELS."""
    pixels = probe.width * probe.height
    if pixels > MAX_FRAME_PIXELS:
        raise _fail(
            path,
            f"frames are {probe.width}x{probe.height} ({pixels / 1e6:.0f} megapixels); "
            f"at most {MAX_FRAME_PIXELS / 1e6:.0f} megapixels per frame are decoded",
        )
    total = count * size[0] * size[1]
    if total > MAX_PIXELS:
        raise ValueError(
            f"{count} frames of {size[0]}x{size[1]} are {total / 1e6:.0f} megapixels; load_video holds at most "
            f"{MAX_PIXELS / 1e6:.0f} (ask for fewer frames or a smaller max_side)"
        )


def _decoder_threads(probe: _Probe) -> int:
    """Decoder threads for this frame size: 0 (FFmpeg's automatic count) unless one decoded
    frame per thread would pass _DECODER_BYTES; one for tiny frames (_THREADED_MIN_PIXELS)."""
    if probe.width * probe.height < _THREADED_MIN_PIXELS:
        return 1
    per_thread = 3 * max(1, probe.width * probe.height)  # 4:4:4 8-bit, or 4:2:0 at 10 bits
    cap = _DECODER_BYTES // per_thread
    return 0 if cap >= _AUTO_THREADS else max(1, cap)


def _configure(stream, probe: _Probe) -> None:
    """Threads bounded by frame size, and a decoder that refuses frames over MAX_FRAME_PIXELS
    whatever the header said."""
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = _decoder_threads(probe)
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}


def _rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame as uint8 RGB [H, W, 3] at ``size`` (width, height). Scaling happens in
    the colour conversion itself, so no full-size RGB frame is ever made."""
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])


def _check_decodable(path: str, found: int, declared: int) -> None:
    if found == 0:
        raise _fail(path, "no decodable frames (corrupt or truncated file)")
    if declared and found < _MIN_DECODABLE_FRACTION * declared:
        raise _fail(path, f"truncated or corrupt: {found} of {declared} declared frames are readable")


def _frame_time(frame, start: float) -> float | None:
    return None if frame.time is None else float(frame.time) - start


@dataclass(frozen=True)
class _Plan:
    """What a reader will give, known before its first frame is decoded: ``count`` frames
    sampled from ``total`` at rate ``fps``."""

    count: int
    total: int
    fps: float


class _Shortfall(Exception):
    """Fewer frames decode than packets exist: sample again over the ``decoded`` frames."""

    def __init__(self, decoded: int):
        super().__init__(decoded)
        self.decoded = decoded


class _DecordFailed(Exception):
    """decord failed after planning (PyAV then decides about the file)."""


class FramesChanged(ValueError):
    """A `VideoStream` had to resample after handing out chunks (a file with fewer decodable
    frames than packets, or decord failing mid-file): read it whole with `load_video`."""


class DecodeTimeout(ValueError):
    """Decoding ran past the ``time_budget`` given to `load_video` / `stream_video` (one line,
    saying how far it got)."""


class Cancelled(RuntimeError):
    """Work given up because its ``should_stop()`` said so (e.g. the visitor who asked went
    away): decoding in `load_video` / `stream_video`, encoding in `stc.VideoLLM.answer`."""


class _Guard:
    """The time budget and the stop callable of one read, checked as frames decode.

    Time counts only while a reader runs (`resume` .. `pause`): a `VideoStream`'s consumer
    works between chunks on its own clock. ``check()`` raises `DecodeTimeout` past the budget
    and `Cancelled` when ``should_stop()`` (asked at most every _STOP_POLL_SECONDS) says so;
    ``frame()`` counts a decoded frame, then checks.
    """

    def __init__(self, path: str, time_budget: float | None = None, should_stop: Callable[[], bool] | None = None):
        self.path, self.budget, self.should_stop = path, time_budget, should_stop
        self.active = time_budget is not None or should_stop is not None
        self.count = 0  # sampled frames planned (set by the reader once known)
        self.kept = self.decoded = 0
        self._spent, self._since, self._ask_at = 0.0, None, 0.0

    def resume(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += time.monotonic() - self._since
            self._since = None

    def check(self) -> None:
        if not self.active:
            return
        now = time.monotonic()
        spent = self._spent + (now - self._since if self._since is not None else 0.0)
        if self.budget is not None and spent > self.budget:
            self.pause()
            planned = f" of {self.count}" if self.count else ""
            decoded = f" ({self.decoded:,} decoded)" if self.decoded else ""
            raise DecodeTimeout(
                f"cannot read video {self.path}: decoding passed its {self.budget:g} s limit with {self.kept}{planned} "
                f"frames read{decoded}; ask for fewer frames, or trim or shrink the video"
            )
        if self.should_stop is not None and now >= self._ask_at:
            self._ask_at = now + _STOP_POLL_SECONDS
            if self.should_stop():
                self.pause()
                raise Cancelled(f"cancelled while decoding {self.path} ({self.kept} frames read)")

    def frame(self) -> None:
        self.decoded += 1
        self.check()


# Readers are generators: first a `_Plan` (or None: this reader cannot read the file), then
# chunks (uint8 [t, H, W, 3] frames, float64 [t] timestamps, int64 [t] indices) of at most
# ``chunk`` frames each, in order. `load_video` concatenates them, `stream_video` hands them on.


def _read_sequential(path: str, num_frames: int, probe: _Probe, size: tuple[int, int], chunk: int,
                     total: int | None = None, guard: _Guard | None = None):
    """Decode front to back, converting only the sampled frames. Exact frame indices. Raises
    `_Shortfall` when fewer frames decode than the packets promised."""
    import av

    guard = guard or _Guard(path)
    if total is None:
        total = probe.counted
    if total is None:
        with _open(path) as container:
            stream = _video_stream(container, path)
            # Demuxing (no decoding) counts the frames exactly; headers can be off by one or
            # missing (AVI, MKV).
            total = 0
            for packet in container.demux(stream):
                if packet.size:
                    total += 1
                    if total % 256 == 0:
                        guard.check()
    _check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    _check_budget(path, probe, len(wanted), size)
    guard.count = len(wanted)
    fps = probe.fps or (total / probe.duration if probe.duration else 1.0)
    yield _Plan(len(wanted), total, fps)
    targets = wanted.tolist()
    frames, times, done, decoded = [], [], 0, 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        _configure(stream, probe)
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                guard.frame()
                if index != targets[done]:
                    continue
                at = _frame_time(frame, probe.start)
                frames.append(_rgb(frame, size))
                times.append(at if at is not None else index / fps)
                done += 1
                guard.kept += 1
                if len(frames) == chunk or done == len(targets):
                    yield np.stack(frames), np.asarray(times), wanted[done - len(frames) : done]
                    frames, times = [], []
                if done == len(targets):
                    break
        except av.error.FFmpegError as err:
            raise _fail(path, f"corrupt: decoding failed after {decoded} frames ({err.strerror})") from None
    if done < len(targets):
        _check_decodable(path, decoded, total)
        raise _Shortfall(decoded)


def _keyframe_before(index, stream, probe: _Probe, seconds: float) -> float | None:
    """Seconds of the keyframe a backward seek to ``seconds`` lands on, read from the container's
    index through a second demuxer ``index`` (packets only, nothing decoded); None when the
    first packet there is not a keyframe or carries no time."""
    import av

    try:
        index.seek(int((probe.start + seconds) / stream.time_base), stream=stream, backward=True, any_frame=False)
        for packet in index.demux(stream):
            if packet.size:
                if packet.is_keyframe and packet.pts is not None:
                    return float(packet.pts * stream.time_base) - probe.start
                return None
    except av.error.FFmpegError:
        return None
    return None


def _read_seeking(path: str, num_frames: int, probe: _Probe, size: tuple[int, int], chunk: int,
                  guard: _Guard | None = None):
    """Reach each sampled frame by decoding forward from the last decoded one, or by seeking
    when the keyframe a seek lands on lies past it: the cheaper of the two, and no frame is
    decoded twice, so a file with one keyframe is decoded once front to back (at most), never
    from its start again for every sampled frame; a file with keyframes every few seconds
    decodes a few seconds per sampled frame."""
    import av

    guard = guard or _Guard(path)
    fps, total = probe.fps, probe.declared_frames
    wanted = sample_indices(total, num_frames)
    _check_budget(path, probe, len(wanted), size)
    guard.count = len(wanted)
    yield _Plan(len(wanted), total, fps)
    half = 0.5 / fps
    frames, timestamps, indices, previous = [], [], [], None
    with _open(path) as container, _open(path) as index_container:
        stream = _video_stream(container, path)
        index_stream = _video_stream(index_container, path)
        _configure(stream, probe)
        decoder, last, last_time, furthest = None, None, None, None
        for index in wanted.tolist():
            target = index / fps
            seek = decoder is None or last_time is None
            if not seek and target - last_time > _SEEK_GAP_SECONDS:
                keyframe = _keyframe_before(index_container, index_stream, probe, target)
                seek = keyframe is None or keyframe > last_time + half
            guard.check()
            if seek:
                offset = int((probe.start + target) / stream.time_base)
                container.seek(offset, stream=stream, backward=True, any_frame=False)
                decoder, last, last_time = container.decode(stream), None, None
            found = None
            try:
                for frame in decoder:
                    guard.frame()
                    at = _frame_time(frame, probe.start)
                    if at is None:
                        raise _fail(path, "frames carry no timestamps; cannot seek in it")
                    last, last_time = frame, at
                    furthest = at if furthest is None else max(furthest, at)
                    if at >= target - half:
                        found = frame
                        break
            except av.error.FFmpegError as err:
                raise _fail(path, f"corrupt: decoding failed near {target:.2f}s ({err.strerror})") from None
            if found is None:
                # Past the end: fine within a frame or two of it, truncation otherwise.
                if last is None or target - last_time > max(2.0 / fps, 0.5):
                    reached = "no frame decodes" if furthest is None else f"no frames after {furthest:.2f}s"
                    expected = probe.duration or total / fps
                    raise _fail(path, f"truncated or corrupt: {reached} of a declared {expected:.2f}s")
                found = last
            at = _frame_time(found, probe.start)
            if previous is not None and round(at * fps) <= previous:
                continue  # the same frame again (irregular timestamps); keep it once
            previous = int(round(at * fps))
            frames.append(_rgb(found, size))
            timestamps.append(at)
            indices.append(previous)
            guard.kept += 1
            if len(frames) == chunk:
                yield np.stack(frames), np.asarray(timestamps), np.asarray(indices, dtype=np.int64)
                frames, timestamps, indices = [], [], []
    if frames:
        yield np.stack(frames), np.asarray(timestamps), np.asarray(indices, dtype=np.int64)


def _read_decord(path: str, num_frames: int, probe: _Probe, size: tuple[int, int], chunk: int,
                 guard: _Guard | None = None):
    """Read with decord, scaled to ``size`` inside its reader (uint8, never a full-size RGB
    batch). Plans None when decord cannot open the file, and raises `_DecordFailed` when it
    fails later (PyAV then decides about the file). A guarded read asks decord for one frame
    per call and checks the guard between calls (a call itself cannot be interrupted)."""
    guard = guard or _Guard(path)
    scaled = size != (probe.width, probe.height)
    try:
        import decord

        reader = decord.VideoReader(
            path,
            ctx=decord.cpu(0),
            width=size[0] if scaled else -1,
            height=size[1] if scaled else -1,
            num_threads=_decoder_threads(probe),
        )
        total = len(reader)
    except Exception:
        yield None
        return
    _check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    _check_budget(path, probe, len(wanted), size)
    try:
        fps = float(reader.get_avg_fps()) or probe.fps or 1.0
    except Exception:
        yield None
        return
    guard.count = len(wanted)
    yield _Plan(len(wanted), total, fps)
    step = 1 if guard.active else chunk
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        pieces = []
        try:
            for at in range(0, len(part), step):
                guard.check()
                pieces.append(reader.get_batch(part[at : at + step].tolist()).asnumpy())
                guard.kept += len(pieces[-1])
            frames = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            timestamps = reader.get_frame_timestamp(part.tolist())[:, 0].astype(np.float64)
        except Exception as err:
            if isinstance(err, (DecodeTimeout, Cancelled)):
                raise
            raise _DecordFailed() from None
        if frames.shape[1:] != (size[1], size[0], 3) or frames.dtype != np.uint8:
            raise _DecordFailed()  # the header's size was not the decoded one
        yield frames, timestamps, part


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def _check_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if "\0" in path:
        raise ValueError(f"not a video file path: it contains a NUL byte ({Path(path).name!r})")
    file = Path(path)
    if not file.exists():
        raise ValueError(f"video file not found: {path}")
    if not file.is_file():
        raise ValueError(f"not a file: {path}")
    if file.stat().st_size == 0:
        raise ValueError(f"video file is empty: {path}")
    return path


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about its first video stream (see `probe`).

    duration: seconds (from the header, else measured from the packets); fps: average frame
    rate, None when unknown; frames: declared frame count (from duration x fps when the header
    has none, counted when the packets were read); width / height: coded frame size in pixels.
    """

    duration: float | None
    fps: float | None
    frames: int
    width: int
    height: int


def probe(path: str | os.PathLike) -> VideoInfo:
    """A video file's duration, frame rate, frame count and size, without decoding a frame.

    For checks before the real work, such as an app's duration or resolution limits. The
    header answers in milliseconds, whatever the length. Where it has no plausible duration
    (a live-mode Matroska, a raw H.264 stream) the packets are read, not decoded, for at most
    5 s: the last timestamp, or the count over the frame rate, gives the length; a file that
    cannot be measured in that time is refused. Raises the same one-line ValueErrors as
    `load_video` for a missing, empty, non-video or audio-only file; a file whose header
    parses but whose frames are corrupt passes here and fails in `load_video`.
    """
    path = _check_file(path)
    header = _header(path)
    return VideoInfo(
        duration=header.duration,
        fps=header.fps,
        frames=header.declared_frames,
        width=header.width,
        height=header.height,
    )


def _request(path, num_frames, fps, max_frames, backend, max_side):
    """Check a request and read the header: (path, T asked, header, working size), the budget
    checked before any decoding (again in each reader once the frame count is exact)."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral) or not 1 <= max_frames <= MAX_FRAMES:
        raise ValueError(f"max_frames must be an int in [1, {MAX_FRAMES}], got {max_frames!r}")
    num_frames = _check_num_frames(num_frames)
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
    if backend == "decord" and not _decord_available():
        raise ValueError("backend='decord' asked for, but decord is not installed")
    path = _check_file(path)
    # Header checks by PyAV for every backend, so errors read the same whichever decodes.
    probe = _header(path)
    if fps is not None:
        length = probe.duration or (probe.declared_frames / probe.fps if probe.fps else 0.0)
        num_frames = max(1, min(max_frames, int(round(length * fps))))
    count = min(num_frames, probe.declared_frames or num_frames)
    if auto:
        max_side = _auto_side(probe.width, probe.height, count)
    size = _working_size(probe.width, probe.height, max_side)
    _check_budget(path, probe, count, size)
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

    def __init__(self, path: str, num_frames: int, probe: _Probe, size: tuple[int, int], backend: str, chunk: int,
                 guard: _Guard | None = None):
        self.source, self.chunk = path, chunk
        self._asked, self._probe, self._size, self._backend = num_frames, probe, size, backend
        self._guard = guard or _Guard(path)
        # decord cannot be interrupted inside a call: a guarded read is PyAV's unless decord is named.
        self._decord = backend == "decord" or (backend == "auto" and not self._guard.active and _decord_available())
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
                reader = _read_decord(*args, guard=guard)
                plan = next(reader)
                if plan is not None:
                    return reader, plan, "decord"
                if self._backend == "decord":
                    raise _fail(path, "decord could not decode it")
            long = probe.timed and probe.fps and probe.duration and probe.declared_frames > _SEQUENTIAL_MAX_FRAMES
            reader = _read_seeking(*args, guard=guard) if long else _read_sequential(*args, total=total, guard=guard)
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
        """Start again after a reader's `_Shortfall` (over the frames that decode) or
        `_DecordFailed` (with PyAV)."""
        if isinstance(why, _DecordFailed):
            if self._backend == "decord":
                raise _fail(self.source, "decord could not decode it") from None
            self._decord = False
        total = why.decoded if isinstance(why, _Shortfall) else None
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
            except (_Shortfall, _DecordFailed) as why:
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
            except (_Shortfall, _DecordFailed) as why:
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
    guard = _guard(path, time_budget, should_stop)
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
            cost at most one pass however their keyframes lie (see `_read_seeking`), but
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
    guard = _guard(path, time_budget, should_stop)
    path, num_frames, probe, size = _request(path, num_frames, fps, max_frames, backend, max_side)
    guard.path = path
    return VideoStream(path, num_frames, probe, size, backend, 64, guard).read()


def _guard(path, time_budget, should_stop) -> _Guard:
    """The checked guards of one read (ValueError for a bad ``time_budget`` or ``should_stop``)."""
    if time_budget is not None and (
        isinstance(time_budget, bool) or not isinstance(time_budget, numbers.Real) or not math.isfinite(time_budget)
        or not time_budget > 0
    ):
        raise ValueError(f"time_budget must be a positive number of seconds or None, got {time_budget!r}")
    if should_stop is not None and not callable(should_stop):
        raise ValueError(f"should_stop must be a callable or None, got {type(should_stop).__name__}")
    return _Guard(str(path), None if time_budget is None else float(time_budget), should_stop)
