"""The one-line errors a read raises: a file it cannot read (`fail`), a stream that had to be
sampled again (`FramesChanged`), its time budget passed (`DecodeTimeout`), a stop asked for
(`Cancelled`)."""

from __future__ import annotations


def fail(path: str, why: str) -> ValueError:
    return ValueError(f"cannot read video {path}: {why}")


class FramesChanged(ValueError):
    """A `VideoStream` had to resample after handing out chunks (a file with fewer decodable
    frames than packets, or decord failing mid-file): read it whole with `load_video`."""


class DecodeTimeout(ValueError):
    """Decoding ran past the ``time_budget`` given to `load_video` / `stream_video` (one line,
    saying how far it got)."""


class Cancelled(RuntimeError):
    """Work given up because its ``should_stop()`` said so (e.g. the visitor who asked went
    away): decoding in `load_video` / `stream_video`, encoding in `stc.VideoLLM.answer`."""
