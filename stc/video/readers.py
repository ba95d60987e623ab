"""The readers: PyAV front to back (`read_sequential`), PyAV by seeking only where it saves
decoding (`read_seeking`), decord (`read_decord`). Each is a generator of a `Plan`, then chunks
of sampled frames; `stc.video.stream` chooses one and restarts it when it must."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Cancelled, DecodeTimeout, fail
from .frames import sample_indices
from .guard import Guard
from .header import Header, first_video_stream, open_file
from .sizing import check_budget, configure, decoder_threads

# Up to this many frames (about 20 s at 30 fps) a clip is decoded front to back, which is
# exact and cheap; longer ones are read by seeking.
SEQUENTIAL_MAX_FRAMES = 600
# In the seeking reader, a target closer than this to the last decoded frame is reached by
# decoding forward without asking the index; further ones are sought only when the keyframe a
# seek would land on lies past the last decoded frame (seeking never decodes a frame twice).
_SEEK_GAP_SECONDS = 2.0
# A file whose decodable frames fall short of its declared frame count by more than this is
# reported as truncated rather than silently sampled from its first part.
_MIN_DECODABLE_FRACTION = 0.9


def rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame as uint8 RGB [H, W, 3] at ``size`` (width, height). Scaling happens in
    the colour conversion itself, so no full-size RGB frame is ever made."""
    if (frame.width, frame.height) == size:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])


def check_decodable(path: str, found: int, declared: int) -> None:
    if found == 0:
        raise fail(path, "no decodable frames (corrupt or truncated file)")
    if declared and found < _MIN_DECODABLE_FRACTION * declared:
        raise fail(path, f"truncated or corrupt: {found} of {declared} declared frames are readable")


def frame_time(frame, start: float) -> float | None:
    return None if frame.time is None else float(frame.time) - start


@dataclass(frozen=True)
class Plan:
    """What a reader will give, known before its first frame is decoded: ``count`` frames
    sampled from ``total`` at rate ``fps``."""

    count: int
    total: int
    fps: float


class Shortfall(Exception):
    """Fewer frames decode than packets exist: sample again over the ``decoded`` frames."""

    def __init__(self, decoded: int):
        super().__init__(decoded)
        self.decoded = decoded


class DecordFailed(Exception):
    """decord failed after planning (PyAV then decides about the file)."""


# Readers are generators: first a `Plan` (or None: this reader cannot read the file), then
# chunks (uint8 [t, H, W, 3] frames, float64 [t] timestamps, int64 [t] indices) of at most
# ``chunk`` frames each, in order. `load_video` concatenates them, `stream_video` hands them on.


def read_sequential(path: str, num_frames: int, probe: Header, size: tuple[int, int], chunk: int,
                     total: int | None = None, guard: Guard | None = None):
    """Decode front to back, converting only the sampled frames. Exact frame indices. Raises
    `Shortfall` when fewer frames decode than the packets promised."""
    import av

    guard = guard or Guard(path)
    if total is None:
        total = probe.counted
    if total is None:
        with open_file(path) as container:
            stream = first_video_stream(container, path)
            # Demuxing (no decoding) counts the frames exactly; headers can be off by one or
            # missing (AVI, MKV).
            total = 0
            for packet in container.demux(stream):
                if packet.size:
                    total += 1
                    if total % 256 == 0:
                        guard.check()
    check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    check_budget(path, probe, len(wanted), size)
    guard.count = len(wanted)
    fps = probe.fps or (total / probe.duration if probe.duration else 1.0)
    yield Plan(len(wanted), total, fps)
    targets = wanted.tolist()
    frames, times, done, decoded = [], [], 0, 0
    with open_file(path) as container:
        stream = first_video_stream(container, path)
        configure(stream, probe)
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                guard.frame()
                if index != targets[done]:
                    continue
                at = frame_time(frame, probe.start)
                frames.append(rgb(frame, size))
                times.append(at if at is not None else index / fps)
                done += 1
                guard.kept += 1
                if len(frames) == chunk or done == len(targets):
                    yield np.stack(frames), np.asarray(times), wanted[done - len(frames) : done]
                    frames, times = [], []
                if done == len(targets):
                    break
        except av.error.FFmpegError as err:
            raise fail(path, f"corrupt: decoding failed after {decoded} frames ({err.strerror})") from None
    if done < len(targets):
        check_decodable(path, decoded, total)
        raise Shortfall(decoded)


def _keyframe_before(index, stream, probe: Header, seconds: float) -> float | None:
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


def read_seeking(path: str, num_frames: int, probe: Header, size: tuple[int, int], chunk: int,
                  guard: Guard | None = None):
    """Reach each sampled frame by decoding forward from the last decoded one, or by seeking
    when the keyframe a seek lands on lies past it: the cheaper of the two, and no frame is
    decoded twice, so a file with one keyframe is decoded once front to back (at most), never
    from its start again for every sampled frame; a file with keyframes every few seconds
    decodes a few seconds per sampled frame."""
    import av

    guard = guard or Guard(path)
    fps, total = probe.fps, probe.declared_frames
    wanted = sample_indices(total, num_frames)
    check_budget(path, probe, len(wanted), size)
    guard.count = len(wanted)
    yield Plan(len(wanted), total, fps)
    half = 0.5 / fps
    frames, timestamps, indices, previous = [], [], [], None
    with open_file(path) as container, open_file(path) as index_container:
        stream = first_video_stream(container, path)
        index_stream = first_video_stream(index_container, path)
        configure(stream, probe)
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
                    at = frame_time(frame, probe.start)
                    if at is None:
                        raise fail(path, "frames carry no timestamps; cannot seek in it")
                    last, last_time = frame, at
                    furthest = at if furthest is None else max(furthest, at)
                    if at >= target - half:
                        found = frame
                        break
            except av.error.FFmpegError as err:
                raise fail(path, f"corrupt: decoding failed near {target:.2f}s ({err.strerror})") from None
            if found is None:
                # Past the end: fine within a frame or two of it, truncation otherwise.
                if last is None or target - last_time > max(2.0 / fps, 0.5):
                    reached = "no frame decodes" if furthest is None else f"no frames after {furthest:.2f}s"
                    expected = probe.duration or total / fps
                    raise fail(path, f"truncated or corrupt: {reached} of a declared {expected:.2f}s")
                found = last
            at = frame_time(found, probe.start)
            if previous is not None and round(at * fps) <= previous:
                continue  # the same frame again (irregular timestamps); keep it once
            previous = int(round(at * fps))
            frames.append(rgb(found, size))
            timestamps.append(at)
            indices.append(previous)
            guard.kept += 1
            if len(frames) == chunk:
                yield np.stack(frames), np.asarray(timestamps), np.asarray(indices, dtype=np.int64)
                frames, timestamps, indices = [], [], []
    if frames:
        yield np.stack(frames), np.asarray(timestamps), np.asarray(indices, dtype=np.int64)


def read_decord(path: str, num_frames: int, probe: Header, size: tuple[int, int], chunk: int,
                 guard: Guard | None = None):
    """Read with decord, scaled to ``size`` inside its reader (uint8, never a full-size RGB
    batch). Plans None when decord cannot open the file, and raises `DecordFailed` when it
    fails later (PyAV then decides about the file). A guarded read asks decord for one frame
    per call and checks the guard between calls (a call itself cannot be interrupted)."""
    guard = guard or Guard(path)
    scaled = size != (probe.width, probe.height)
    try:
        import decord

        reader = decord.VideoReader(
            path,
            ctx=decord.cpu(0),
            width=size[0] if scaled else -1,
            height=size[1] if scaled else -1,
            num_threads=decoder_threads(probe),
        )
        total = len(reader)
    except Exception:
        yield None
        return
    check_decodable(path, total, probe.declared_frames)
    wanted = sample_indices(total, num_frames)
    check_budget(path, probe, len(wanted), size)
    try:
        fps = float(reader.get_avg_fps()) or probe.fps or 1.0
    except Exception:
        yield None
        return
    guard.count = len(wanted)
    yield Plan(len(wanted), total, fps)
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
            raise DecordFailed() from None
        if frames.shape[1:] != (size[1], size[0], 3) or frames.dtype != np.uint8:
            raise DecordFailed()  # the header's size was not the decoded one
        yield frames, timestamps, part


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True
