"""The decode choice and streaming: whether a long video is encoded chunk by chunk into its
method's streaming stage 1 (`Method.compressor`), and that loop.

A method streams when it says so (`Method.streams`: stc, stc-stage1, stc-st); a family when its
frames encode independently (`FamilyAdapter.streamable`: LLaVA-OneVision); a video when it has
more than one window of frames (`stc.stream.WINDOW_FRAMES`). Then peak memory is one chunk's
activations and features plus the budget, whatever the frame count, and a path is decoded chunk
by chunk too (`stc.video.stream_video`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from ..config import STCConfig
from ..methods import get_method
from ..results import Compressed, Encoded
from ..stream import WINDOW_FRAMES
from ..video import FramesChanged, Video, VideoStream, load_video, stream_video
from .family import FamilyAdapter

# Frames encoded at once on the streaming path.
CHUNK_FRAMES = 16


def may_stream(adapter: FamilyAdapter, config: STCConfig | None) -> bool:
    """Whether a long video under ``config`` may stream on this family: a method that streams,
    on a family whose frames encode independently."""
    return config is not None and get_method(config.method).streams and adapter.streamable


def streams(adapter: FamilyAdapter, video: Video | VideoStream, config: STCConfig | None) -> bool:
    """Whether ``video`` is encoded in chunks (see the module doc): `may_stream`, on more than
    `WINDOW_FRAMES` frames."""
    return may_stream(adapter, config) and video.num_frames > WINDOW_FRAMES


def as_video(adapter: FamilyAdapter, video, num_frames: int, step: Callable[[str], None], fps: float | None,
             max_frames: int, config: STCConfig | None, lazy: bool = True,
             should_stop: Callable[[], bool] | None = None) -> Video | VideoStream:
    """``video`` itself, or the file sampled: a `VideoStream` (decoded chunk by chunk while it is
    encoded) when it will stream (`streams`), else a `Video`. ``should_stop`` is asked while
    frames decode (`stc.video.Cancelled`)."""
    if isinstance(video, Video):
        return video
    if lazy and may_stream(adapter, config):
        stream = stream_video(Path(video), num_frames, fps=fps, max_frames=max_frames, chunk=CHUNK_FRAMES,
                              should_stop=should_stop)
        if streams(adapter, stream, config):
            return stream
        step("decoding video")
        return stream.read()
    step("decoding video")
    return load_video(Path(video), num_frames=num_frames, fps=fps, max_frames=max_frames, should_stop=should_stop)


def encode_stream(adapter: FamilyAdapter, video: Video | VideoStream, config: STCConfig,
                  sync: Callable[[], None]) -> tuple[Encoded, Compressed, float]:
    """Encode CHUNK_FRAMES frames at a time and hand each chunk's features to the method's
    streaming stage 1 (`Method.compressor`), then drop them. Returns an `Encoded` marked
    ``streamed`` whose ``features`` is a zero-stride placeholder of the video's [S, N, D] shape
    (nothing is held), the stage-1 result, and the compression time (``sync``: the device
    synchronised before each clock read). Raises `FramesChanged` when a stream gives other than
    the frames it planned (the budget was set for those)."""
    method = get_method(config.method)
    compressor, vision, compress, last = None, 0.0, 0.0, None
    frames = video.num_frames
    if isinstance(video, VideoStream):
        chunks = iter(video)
    else:
        chunks = (video.take(slice(start, start + CHUNK_FRAMES)) for start in range(0, frames, CHUNK_FRAMES))
    for chunk in chunks:
        last = adapter.encode(chunk)
        del chunk
        vision += last.vision_seconds
        if compressor is None:
            compressor = method.compressor(config, config.budget(frames * last.features.shape[1]))
        sync()
        t0 = time.perf_counter()
        compressor.add(last.features, last.scores)
        sync()
        compress += time.perf_counter() - t0
        last.features = last.scores = None  # this chunk's features are not kept
    if len(video.timestamps) != frames:
        raise FramesChanged(f"{video.source}: {len(video.timestamps)} frames decoded, {frames} planned")
    t0 = time.perf_counter()
    kept = compressor.finish()
    sync()
    compress += time.perf_counter() - t0
    n, d = compressor.tokens_per_frame, kept.tokens.shape[1]
    encoded = Encoded(
        features=kept.tokens.new_empty(1, 1, d).expand(frames, n, d),
        scores=torch.empty(1, 1).expand(frames, n),
        extra=last.extra,
        grid=last.grid,
        frames_per_slot=last.frames_per_slot,
        vision_seconds=vision,
        timestamps=video.timestamps,
        streamed=True,
    )
    return encoded, kept, compress
