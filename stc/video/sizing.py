"""Sizes before decoding: the working size of frames (longer side at most `max_side`, "auto"
fitting many frames into MAX_PIXELS), the memory budget refused up front, decoder threads
bounded by frame size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import fail

if TYPE_CHECKING:
    from .header import Header

# Longer side of decoded frames (LLaVA-OV resizes to 384; Qwen2.5-VL's default video budget
# is ~600k pixels per frame, about 1000 x 600): 1344 loses nothing any model sees.
MAX_SIDE = 1344
# With max_side="auto", many frames are decoded smaller so that they fit MAX_PIXELS, but never
# below this side (LLaVA-OneVision's input size): 1,024 16:9 frames at 384 px are 85 megapixels.
MIN_AUTO_SIDE = 384

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


def working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) of frames as returned: the longer side scaled down to ``max_side``
    (aspect kept, even sizes), the decoded size when it already fits."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def auto_side(width: int, height: int, count: int) -> int:
    """The longest side in [MIN_AUTO_SIDE, MAX_SIDE] at which ``count`` frames fit MAX_PIXELS
    (MIN_AUTO_SIDE when none does: the budget check then refuses)."""
    side = MAX_SIDE
    while side > MIN_AUTO_SIDE:
        w, h = working_size(width, height, side)
        if count * w * h <= MAX_PIXELS:
            break
        side = max(MIN_AUTO_SIDE, side - 32)
    return side


def check_budget(path: str, probe: Header, count: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding, a frame larger than MAX_FRAME_PIXELS or `count` frames of
    `size` (working size) over MAX_PIXELS."""
    pixels = probe.width * probe.height
    if pixels > MAX_FRAME_PIXELS:
        raise fail(
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


def decoder_threads(probe: Header) -> int:
    """Decoder threads for this frame size: 0 (FFmpeg's automatic count) unless one decoded
    frame per thread would pass _DECODER_BYTES; one for tiny frames (_THREADED_MIN_PIXELS)."""
    if probe.width * probe.height < _THREADED_MIN_PIXELS:
        return 1
    per_thread = 3 * max(1, probe.width * probe.height)  # 4:4:4 8-bit, or 4:2:0 at 10 bits
    cap = _DECODER_BYTES // per_thread
    return 0 if cap >= _AUTO_THREADS else max(1, cap)


def refuse_huge_frames(stream) -> None:
    """Tell the decoder to refuse frames over MAX_FRAME_PIXELS, whatever the header said."""
    stream.codec_context.options = {"max_pixels": str(MAX_FRAME_PIXELS)}


def configure(stream, probe: Header) -> None:
    """Threads bounded by frame size, and a decoder that refuses frames over MAX_FRAME_PIXELS."""
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = decoder_threads(probe)
    refuse_huge_frames(stream)
