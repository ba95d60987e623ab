"""What a file's header says (duration, rate, frame count, size), read once per unchanged file,
measured from the packets where the header has no plausible duration; `probe` and the checks
on a path before anything is read."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import fail
from .sizing import refuse_huge_frames

# A header without a plausible duration: the length is measured by reading packets (no
# decoding) for at most this long; a file that takes longer is refused.
LENGTH_SCAN_SECONDS = 5.0
_MAX_PLAUSIBLE_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Header:
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


def open_file(path: str):
    import av

    try:
        return av.open(path)
    except av.error.FFmpegError as err:
        raise fail(path, f"not a video file, or corrupt/truncated ({err.strerror})") from None


def first_video_stream(container, path: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise fail(path, f"no video stream (has: {', '.join(kinds)})")
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


def count_packets(container, stream, path: str, start: float) -> tuple[int, float | None]:
    """(packets with data, end of the last one in seconds from `start` or None when packets
    carry no timestamps), reading packets without decoding them for at most
    LENGTH_SCAN_SECONDS; a corrupt tail ends the count."""
    import av

    deadline = time.monotonic() + LENGTH_SCAN_SECONDS
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
                raise fail(
                    path,
                    f"no usable duration in its header, and its length could not be measured within "
                    f"{LENGTH_SCAN_SECONDS:g} s ({count} frames{so_far} read so far)",
                )
    except av.error.FFmpegError:
        pass
    return count, end


def _first_frame_size(path: str) -> tuple[int, int]:
    """Frame size from the first decoded frame, for a header that does not say."""
    import av

    with open_file(path) as container:
        stream = first_video_stream(container, path)
        refuse_huge_frames(stream)
        try:
            for frame in container.decode(stream):
                return frame.width, frame.height
        except av.error.FFmpegError as err:
            raise fail(path, f"frame size is not in its header and no frame decodes ({err.strerror})") from None
    raise fail(path, "frame size is not in its header and no frame decodes")


def _parse(stream, container, path: str) -> Header:
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
        counted, end = count_packets(container, stream, path, start)
        if counted == 0:
            raise fail(path, "no video frames (corrupt or truncated file)")
        declared, timed = counted, end is not None and end > 0
        # Raw streams get a 25 fps placeholder as average rate; the guessed rate comes from
        # the timestamps or the stream's own timing information.
        fps = guessed or average or (counted / end if timed else None)
        if not fps:
            raise fail(path, "neither its header nor its packets say how long it is")
        # The last timestamp, or for a stream without any (raw H.264) the count at its rate.
        duration = end if timed else counted / fps
    if not declared and fps and duration:
        declared = int(round(duration * fps))
    if width <= 0 or height <= 0:
        width, height = _first_frame_size(path)
    return Header(fps=fps, duration=duration, declared_frames=declared, start=start, width=width, height=height,
                  counted=counted, timed=timed)


def read_header(path: str) -> Header:
    """`_parse` of the file at ``path``, remembered while the file is unchanged: an app checks a
    video's header (`probe`) and then loads it, and a header-less file's packet count (up to
    5 s) should be paid once, not twice."""
    stat = os.stat(path)
    return _remembered_header(path, stat.st_size, stat.st_mtime_ns, LENGTH_SCAN_SECONDS)


@lru_cache(maxsize=64)
def _remembered_header(path: str, size: int, mtime_ns: int, scan_seconds: float) -> Header:
    # scan_seconds: part of the key, so a changed scan bound measures again
    with open_file(path) as container:
        return _parse(first_video_stream(container, path), container, path)


def check_file(path: str | os.PathLike) -> str:
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
    path = check_file(path)
    header = read_header(path)
    return VideoInfo(
        duration=header.duration,
        fps=header.fps,
        frames=header.declared_frames,
        width=header.width,
        height=header.height,
    )
