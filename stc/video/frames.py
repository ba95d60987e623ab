"""The `Video` type (sampled uint8 RGB frames with their times and provenance) and the one
sampling rule (`sample_indices`): what every reader returns and everything downstream reads."""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass

import numpy as np

MAX_FRAMES = 1024
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


def check_num_frames(num_frames) -> int:
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
