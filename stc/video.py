"""Decoding and uniform frame sampling: a video file (or frames in memory) -> `Video`.

Everything downstream (encoders, compression, caching, the app) starts from a `Video`: uint8
RGB frames with the timestamps they were taken at, where they came from, and a note when the
file could not give what was asked. Sampling is uniform over the whole video by one rule
(`sample_indices`). decord reads frames when it is importable, PyAV otherwise; PyAV always
validates the file first, so a bad file gets the same one-line `ValueError` either way. Long
files are never decoded whole: PyAV seeks to the keyframe before each sampled frame and
decodes forward from there. `probe` reads only the header (duration, frame rate, size), for
limits checked before any decoding.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MAX_FRAMES", "Video", "VideoInfo", "load_video", "probe", "sample_indices"]

MAX_FRAMES = 1024
# Longer side of decoded frames (LLaVA-OV resizes to 384; Qwen2.5-VL's default video budget
# is ~600k pixels per frame, about 1000 x 600): 1344 loses nothing any model sees.
MAX_SIDE = 1344

# Up to this many frames (about 20 s at 30 fps) a clip is decoded front to back, which is
# exact and cheap; longer ones are read by seeking.
_SEQUENTIAL_MAX_FRAMES = 600
# In the seeking reader, a target closer than this to the last decoded frame is reached by
# decoding forward instead of seeking (a seek restarts at a keyframe, often further back).
_SEEK_GAP_SECONDS = 2.0
# A file whose decodable frames fall short of its declared frame count by more than this is
# reported as truncated rather than silently sampled from its first part.
_MIN_DECODABLE_FRACTION = 0.9
# content_hash reads at most this many bytes of frames (row-strided beyond it).
_HASH_MAX_BYTES = 32 * 2**20


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


@dataclass
class _Probe:
    """What PyAV's header parse says about the first video stream."""

    fps: float | None
    duration: float | None
    declared_frames: int  # 0 when the container does not say
    start: float  # seconds of the first frame's pts


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


def _probe(stream, container) -> _Probe:
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    tb = stream.time_base
    duration = None
    if stream.duration is not None and tb is not None:
        duration = float(stream.duration * tb)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    start = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    declared = int(stream.frames or 0)
    if not declared and fps and duration:
        declared = int(round(duration * fps))
    return _Probe(fps=fps, duration=duration, declared_frames=declared, start=start)


def _rgb(frame, max_side: int | None) -> np.ndarray:
    """A decoded frame as uint8 RGB [H, W, 3], scaled down (aspect kept, even sizes) so its
    longer side is at most ``max_side``. Scaling happens in the conversion itself, so a 4K
    video never holds full-size RGB frames in memory."""
    w, h = frame.width, frame.height
    if max_side is None or max(w, h) <= max_side:
        return frame.to_ndarray(format="rgb24")
    scale = max_side / max(w, h)
    width, height = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _check_decodable(path: str, found: int, declared: int) -> None:
    if found == 0:
        raise _fail(path, "no decodable frames (corrupt or truncated file)")
    if declared and found < _MIN_DECODABLE_FRACTION * declared:
        raise _fail(path, f"truncated or corrupt: {found} of {declared} declared frames are readable")


def _frame_time(frame, start: float) -> float | None:
    return None if frame.time is None else float(frame.time) - start


def _read_sequential(path: str, num_frames: int, probe: _Probe, total: int | None = None, max_side=None):
    """Decode front to back, converting only the sampled frames. Exact frame indices."""
    import av

    with _open(path) as container:
        stream = _video_stream(container, path)
        if total is None:
            # Demuxing (no decoding) counts the frames exactly; headers can be off by one or
            # missing (AVI, MKV).
            total = sum(1 for packet in container.demux(stream) if packet.size)
    _check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    want = set(wanted.tolist())
    frames, times, decoded = {}, {}, 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in want:
                    frames[index] = _rgb(frame, max_side)
                    times[index] = _frame_time(frame, probe.start)
                    if len(frames) == len(want):
                        break
        except av.error.FFmpegError as err:
            raise _fail(path, f"corrupt: decoding failed after {decoded} frames ({err.strerror})") from None
    if len(frames) < len(want):
        # Fewer frames decode than packets exist (a dropped frame, a truncated tail): sample
        # again over what really decodes.
        _check_decodable(path, decoded, total)
        return _read_sequential(path, num_frames, probe, total=decoded, max_side=max_side)
    fps = probe.fps or (total / probe.duration if probe.duration else 1.0)
    timestamps = [times[i] if times[i] is not None else i / fps for i in wanted.tolist()]
    return np.stack([frames[i] for i in wanted.tolist()]), np.asarray(timestamps), wanted, total, fps


def _read_seeking(path: str, num_frames: int, probe: _Probe, max_side=None):
    """Seek near each sampled frame and decode forward; never decodes the whole file."""
    import av

    fps, total = probe.fps, probe.declared_frames
    wanted = sample_indices(total, num_frames)
    half = 0.5 / fps
    frames, timestamps, indices = [], [], []
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        decoder, last, last_time, furthest = None, None, None, None
        for index in wanted.tolist():
            target = index / fps
            if decoder is None or last_time is None or target - last_time > _SEEK_GAP_SECONDS:
                offset = int((probe.start + target) / stream.time_base)
                container.seek(offset, stream=stream, backward=True, any_frame=False)
                decoder, last, last_time = container.decode(stream), None, None
            found = None
            try:
                for frame in decoder:
                    time = _frame_time(frame, probe.start)
                    if time is None:
                        raise _fail(path, "frames carry no timestamps; cannot seek in it")
                    last, last_time = frame, time
                    furthest = time if furthest is None else max(furthest, time)
                    if time >= target - half:
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
            time = _frame_time(found, probe.start)
            if indices and round(time * fps) <= indices[-1]:
                continue  # the same frame again (irregular timestamps); keep it once
            frames.append(_rgb(found, max_side))
            timestamps.append(time)
            indices.append(int(round(time * fps)))
    return np.stack(frames), np.asarray(timestamps), np.asarray(indices, dtype=np.int64), total, fps


def _read_decord(path: str, num_frames: int, probe: _Probe, max_side=None):
    """Read with decord; None when decord itself fails (PyAV then decides about the file)."""
    try:
        import decord

        reader = decord.VideoReader(path, ctx=decord.cpu(0))
        total = len(reader)
    except Exception:
        return None
    _check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    try:
        frames = reader.get_batch(wanted.tolist()).asnumpy()
        timestamps = reader.get_frame_timestamp(wanted.tolist())[:, 0].astype(np.float64)
        fps = float(reader.get_avg_fps()) or probe.fps or 1.0
    except Exception:
        return None
    return frames, timestamps, wanted, total, fps


def _downscale(frames: np.ndarray, max_side: int) -> np.ndarray:
    import torch

    h, w = frames.shape[1:3]
    scale = max_side / max(h, w)
    size = (max(2, int(round(h * scale / 2)) * 2), max(2, int(round(w * scale / 2)) * 2))
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=size, mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def _check_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
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
    """What a video file's header says about its first video stream (see `probe`).

    duration: seconds, None when the container does not say; fps: average frame rate, None
    when unknown; frames: declared frame count (from duration x fps when the header has none;
    0 when unknown); width / height: coded frame size in pixels.
    """

    duration: float | None
    fps: float | None
    frames: int
    width: int
    height: int


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video file's header without decoding a frame (milliseconds, whatever its length).

    For checks before the real work, such as an app's duration or resolution limits. Raises
    the same one-line ValueErrors as `load_video` for a missing, empty, non-video or
    audio-only file; a file whose header parses but whose frames are corrupt passes here and
    fails in `load_video`.
    """
    path = _check_file(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        header = _probe(stream, container)
        context = stream.codec_context
        return VideoInfo(
            duration=header.duration,
            fps=header.fps,
            frames=header.declared_frames,
            width=int(context.width or 0),
            height=int(context.height or 0),
        )


def load_video(
    path: str | os.PathLike, num_frames: int = 32, *, backend: str = "auto", max_side: int | None = MAX_SIDE
) -> Video:
    """Read `num_frames` frames spread uniformly over a video file (see `sample_indices`).

    Args:
        path: a video file (anything FFmpeg reads: mp4, avi, mkv, webm, mov, ...).
        num_frames: T, an int in [1, 1024]. A video with fewer frames gives all of them and
            says so in `Video.note`.
        backend: "auto" (decord if importable, else PyAV), "decord" or "pyav".
        max_side: frames are scaled down (aspect kept) so the longer side is at most this
            (default 1344: above every supported model's input size, and 4K frames never sit
            in memory at full size); None keeps the decoded size.
    Returns:
        A `Video` with frames uint8 [T, H, W, 3] and timestamps float [T] in seconds.
    Raises:
        ValueError (one line) for a bad num_frames/backend, a missing, empty, non-video,
        audio-only, corrupt or truncated file.
    """
    num_frames = _check_num_frames(num_frames)
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16):
        raise ValueError(f"max_side must be an integer >= 16 or None, got {max_side!r}")
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    if backend == "decord" and not _decord_available():
        raise ValueError("backend='decord' asked for, but decord is not installed")
    path = _check_file(path)
    # Header checks by PyAV for every backend, so errors read the same whichever decodes.
    with _open(path) as container:
        probe = _probe(_video_stream(container, path), container)

    result, used = None, "pyav"
    if backend == "decord" or (backend == "auto" and _decord_available()):
        result, used = _read_decord(path, num_frames, probe, max_side), "decord"
        if result is None and backend == "decord":
            raise _fail(path, "decord could not decode it")
    if result is None:
        used = "pyav"
        long = probe.fps and probe.duration and probe.declared_frames > _SEQUENTIAL_MAX_FRAMES
        reader = _read_seeking if long else _read_sequential
        result = reader(path, num_frames, probe, max_side=max_side)
    frames, timestamps, indices, total, fps = result
    if max_side is not None and max(frames.shape[1:3]) > max_side:  # decord decodes at full size
        frames = _downscale(frames, max_side)

    note = None
    if len(frames) < num_frames:
        note = f"video has {total} frame{'s' * (total != 1)}; sampled {len(frames)} of {num_frames} asked"
    duration = probe.duration if probe.duration else total / fps
    # Headers can understate the length by a frame; the sampled frames must lie inside it.
    duration = max(duration, float(timestamps[-1]) + 1.0 / fps)
    return Video(
        frames=frames,
        timestamps=timestamps,
        fps=fps,
        duration=float(duration),
        source=path,
        frame_indices=indices,
        total_frames=int(total),
        note=note,
        backend=used,
    )
