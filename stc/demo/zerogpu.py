"""ZeroGPU as a visitor meets it: what one click asks for, and what the page says before it.

A click is one `@spaces.GPU` call whose requested duration is computed from the request
(`gpu_seconds`, called with the GPU function's own arguments); a request asking more than a
visitor's remaining daily quota fails at once, so the page states the ask (`quota_note`).
"""

from __future__ import annotations

import math

from .loading import MODELS

GPU_SECONDS_MAX = 240  # the longest ZeroGPU slot one click asks for
# An anonymous visitor's daily ZeroGPU quota (Hugging Face's figure; signed-in accounts get more).
# A click asking more than what is left fails at once ("You have exceeded your GPU quota").
ANONYMOUS_GPU_SECONDS = 120


def gpu_seconds(model_id: str, video: str, question: str, config, num_frames: int, max_new_tokens: int,
                max_seconds: float | None = None) -> int:
    """ZeroGPU seconds one click asks for: start-up, decoding and encoding the frames once, and
    one generation per run.

    Called with the GPU function's own arguments: ``config`` is one `STCConfig` (baseline +
    compressed: two runs) or a sequence of them (compare mode: the baseline + one run each).
    Sized for a 7B model in bf16 on ZeroGPU's card with room to spare (frames decoded and
    processed on the CPU ~0.25 s each including the vision tower, decoding >= 20 tokens/s); a
    generation counts at most ``max_seconds``. The defaults (32 frames, 128 new tokens) ask
    36 s for a Run and 62 s for the default Compare: each fits an anonymous visitor's daily
    quota (`ANONYMOUS_GPU_SECONDS`); `quota_note` warns before a click that does not.
    """
    big = MODELS.get(model_id, ("", 8.0))[1] >= 3 or model_id not in MODELS
    per_frame = 0.25 if big else 0.1
    per_token = 0.05 if big else 0.02
    runs = 1 + (len(config) if isinstance(config, (list, tuple)) else 1)
    generation = per_token * int(max_new_tokens)
    if max_seconds:
        generation = min(generation, float(max_seconds))
    seconds = 15 + per_frame * int(num_frames) + runs * generation
    return int(min(GPU_SECONDS_MAX, math.ceil(seconds)))


def quota_note(seconds: int) -> str:
    """What a ZeroGPU visitor should know before clicking: the GPU time this click asks for and
    whether an anonymous visitor's daily quota covers it."""
    text = f"This click asks ZeroGPU for about {seconds} s of GPU time."
    if seconds > ANONYMOUS_GPU_SECONDS:
        return (f"{text} That is more than an anonymous visitor's daily quota (about "
                f"{ANONYMOUS_GPU_SECONDS} s): sign in to Hugging Face, or use fewer frames, new tokens or methods.")
    return f"{text} Anonymous visitors get about {ANONYMOUS_GPU_SECONDS} s a day; signed-in accounts get more."
