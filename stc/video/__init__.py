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

One module per job: `frames` (the `Video` type, `sample_indices`), `header` (what a file's
header says: `probe`), `sizing` (working size, the memory budget, decoder threads), `readers`
(PyAV front to back, PyAV by seeking, decord), `guard` (the time budget and the stop),
`stream` (`load_video`, `stream_video`: a reader chosen, and restarted when it must sample
again), `errors` (the one-line errors).
"""

from .errors import Cancelled, DecodeTimeout, FramesChanged
from .frames import MAX_FRAMES, Video, sample_indices
from .header import VideoInfo, probe
from .sizing import MAX_FRAME_PIXELS, MAX_PIXELS, MAX_SIDE, MIN_AUTO_SIDE
from .stream import VideoStream, load_video, stream_video

__all__ = [
    "MAX_FRAMES", "MAX_SIDE", "MIN_AUTO_SIDE", "Cancelled", "DecodeTimeout", "FramesChanged", "Video", "VideoInfo",
    "VideoStream", "load_video", "probe", "sample_indices", "stream_video",
]
