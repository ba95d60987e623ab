"""ZeroGPU as a visitor meets it: what one click asks for, and what the page says before it.

A click is one `@spaces.GPU` call whose requested duration is computed from the request
(`gpu_seconds`, called with the GPU function's own arguments); a request asking more than a
visitor's remaining daily quota fails at once, so the page states the ask (`quota_note`).
"""

from __future__ import annotations

import math

from .loading import MODELS
from .long import LLAVA_FRAME_TOKENS

GPU_SECONDS_MAX = 240  # the longest ZeroGPU slot one click asks for
# An anonymous visitor's daily ZeroGPU quota (Hugging Face's figure; signed-in accounts get more).
# A click asking more than what is left fails at once ("You have exceeded your GPU quota").
ANONYMOUS_GPU_SECONDS = 120


def gpu_seconds(model_id: str, video: str, question: str, config, num_frames: int, max_new_tokens: int,
                max_seconds: float | None = None, max_decode_seconds: float | None = None) -> int:
    """ZeroGPU seconds one click asks for: start-up, decoding and encoding the frames once, and
    one generation per run.

    Called with the GPU function's own arguments: ``config`` is one `STCConfig` (baseline +
    compressed: two runs) or a sequence of them (compare mode: the baseline + one run each).
    Sized for a 7B model in bf16 on ZeroGPU's card with room to spare (frames decoded and
    processed on the CPU ~0.25 s each including the vision tower, decoding >= 20 tokens/s); a
    generation counts at most ``max_seconds``. The defaults (32 frames, 128 new tokens) ask
    36 s for a Run and 62 s for the default Compare: each fits an anonymous visitor's daily
    quota (`ANONYMOUS_GPU_SECONDS`); `quota_note` warns before a click that does not.
    ``max_decode_seconds`` (the GPU function's own argument) caps decoding inside the per-frame
    allowance; a file slower than that is refused, not given more of the slot.
    """
    per_frame, per_token = _rates(model_id)
    runs = 1 + (len(config) if isinstance(config, (list, tuple)) else 1)
    generation = per_token * int(max_new_tokens)
    if max_seconds:
        generation = min(generation, float(max_seconds))
    seconds = 15 + per_frame * int(num_frames) + runs * generation
    return int(min(GPU_SECONDS_MAX, math.ceil(seconds)))


def _rates(model_id: str) -> tuple[float, float]:
    """(seconds per frame decoded and encoded, seconds per generated token) on ZeroGPU's card."""
    big = MODELS.get(model_id, ("", 8.0))[1] >= 3 or model_id not in MODELS
    return (0.25, 0.05) if big else (0.1, 0.02)


def long_gpu_seconds(model_id: str, video: str, question: str, max_tokens: int, num_frames: int,
                     max_new_tokens: int, max_seconds: float | None = None,
                     max_decode_seconds: float | None = None) -> int:
    """ZeroGPU seconds one "same cost, more frames" click asks for (called with the GPU function's
    own arguments): start-up, decoding and encoding every frame for stc, encoding the frames the
    budget buys the baseline (LLaVA-OneVision: budget / 196; other families: up to every frame),
    and two generations, each at most ``max_seconds``; at most `GPU_SECONDS_MAX`. The defaults
    (256 frames, 2,048 tokens, 128 new tokens) ask 95 s on a 7B model, within an anonymous
    visitor's quota; 512 frames ask more (`quota_note` says so before the click).
    """
    per_frame, per_token = _rates(model_id)
    frames = int(num_frames)
    baseline = frames if "-vl" in model_id.lower() else min(frames, max(1, int(max_tokens) // LLAVA_FRAME_TOKENS))
    generation = per_token * int(max_new_tokens)
    if max_seconds:
        generation = min(generation, float(max_seconds))
    seconds = 15 + per_frame * (frames + baseline) + 2 * generation
    return int(min(GPU_SECONDS_MAX, math.ceil(seconds)))


def quota_note(seconds: int) -> str:
    """What a ZeroGPU visitor should know before clicking: the GPU time this click asks for and
    whether an anonymous visitor's daily quota covers it."""
    text = f"This click asks ZeroGPU for about {seconds} s of GPU time."
    if seconds > ANONYMOUS_GPU_SECONDS:
        return (f"{text} That is more than an anonymous visitor's daily quota (about "
                f"{ANONYMOUS_GPU_SECONDS} s): sign in to Hugging Face, or use fewer frames, new tokens or methods.")
    return f"{text} Anonymous visitors get about {ANONYMOUS_GPU_SECONDS} s a day; signed-in accounts get more."
