"""Charts: tokens kept per frame over a whole long video (`tokens_timeline`) and the baseline and
a compressed run side by side, one panel per cost (`cost_chart`)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..results import REFILLED, Provenance, Stats
from .paint import BACKGROUND, STATUS_COLORS, TEXT, ZERO_TOKENS, font

_AXIS = (120, 120, 120)
_BAR_COLOURS = ((154, 160, 166), (31, 119, 180))  # baseline grey, compressed blue


def tokens_timeline(
    provenance: Provenance,
    *,
    marks=None,
    timestamps=None,
    width: int = 1100,
    height: int = 120,
    title: str | None = None,
    marks_label: str = "frames the baseline sees",
) -> Image.Image:
    """Every pool frame of an answer at once: one bar per frame, as tall as the tokens it sends to
    the LLM (``provenance.tokens_per_frame``), a red tick under each frame that sends none, and
    a blue tick over each index in ``marks`` (sampled frames, e.g. those an uncompressed run on
    the same budget sees). ``timestamps``: [T] seconds of the sampled frames, for the axis."""
    counts = np.asarray(provenance.tokens_per_frame).astype(int)
    slots, per_slot = len(counts), int(provenance.frames_per_slot)
    if slots < 1:
        raise ValueError("provenance has no frames")
    pad, top, axis = 8, (24 if title else 6) + 10, 18
    plot_w = max(width - 2 * pad, slots)
    bar_h = max(20, height - top - axis - 8)
    canvas = Image.new("RGB", (plot_w + 2 * pad, top + bar_h + 8 + axis), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small = font(12)
    if title:
        draw.text((pad, 4), title, fill=TEXT, font=font(15))
    peak = max(int(counts.max()), 1)
    x_of = [pad + round(i * plot_w / slots) for i in range(slots + 1)]
    base = top + bar_h
    for i, k in enumerate(counts):
        x0, x1 = x_of[i], max(x_of[i], x_of[i + 1] - (1 if plot_w / slots >= 3 else 0))
        if k == 0:
            draw.rectangle([x0, base + 2, x1, base + 6], fill=ZERO_TOKENS)
        else:
            draw.rectangle([x0, base - max(1, round(k / peak * bar_h)), x1, base], fill=STATUS_COLORS[REFILLED])
    for t in [] if marks is None else np.asarray(marks, dtype=int):
        x = (x_of[t // per_slot] + x_of[t // per_slot + 1]) // 2
        draw.line([x, top - 9, x, top - 2], fill=(20, 60, 200), width=2)
    draw.line([pad, base, pad + plot_w, base], fill=_AXIS)
    ends = ["#1", f"#{slots * per_slot}" if per_slot > 1 else f"#{slots}"]
    if timestamps is not None and len(timestamps):
        ends = [f"{ends[0]} {float(timestamps[0]):.1f}s", f"{ends[1]} {float(timestamps[-1]):.1f}s"]
    zero = int((counts == 0).sum())
    middle = (f"bar = tokens sent to the LLM (max {peak}); red: {zero} frame{'s' * (zero != 1)} send none"
              + ("; blue ticks: " + marks_label if marks is not None else ""))
    y = base + 8
    draw.text((pad, y), ends[0], fill=TEXT, font=small)
    draw.text((pad + plot_w // 2, y), middle, fill=TEXT, font=small, anchor="ma")
    draw.text((pad + plot_w, y), ends[1], fill=TEXT, font=small, anchor="ra")
    return canvas


# --------------------------------------------------------------------------------------------
# Costs.
# --------------------------------------------------------------------------------------------


def _panels(baseline: Stats, compressed: Stats) -> list[tuple[str, float, float, str, str]]:
    """(title, baseline value, compressed value, baseline text, compressed text) per panel."""
    gib = 2**30
    unit, scale = ("T", 1e12) if max(baseline.flops, compressed.flops) >= 1e11 else ("G", 1e9)
    memory = "CUDA max allocated" if compressed.peak_memory_kind == "cuda_max_allocated" else "process RSS"
    after_k = (
        f" ({compressed.visual_tokens_stage2:,} after K)"
        if compressed.visual_tokens_stage2 != compressed.visual_tokens_stage1
        else ""
    )
    return [
        ("visual tokens into the LLM", baseline.visual_tokens_stage1, compressed.visual_tokens_stage1,
         f"{baseline.visual_tokens_stage1:,}", f"{compressed.visual_tokens_stage1:,}{after_k}"),
        (f"LLM {unit}FLOPs (paper convention)", baseline.flops / scale, compressed.flops / scale,
         f"{baseline.flops / scale:.3g}", f"{compressed.flops / scale:.3g}"),
        ("vision encoding (s)", baseline.vision_seconds, compressed.vision_seconds,
         f"{baseline.vision_seconds:.2f}", f"{compressed.vision_seconds:.2f}" + (" (shared)" if compressed.vision_cached else "")),
        ("compression (s)", baseline.compress_seconds, compressed.compress_seconds,
         f"{baseline.compress_seconds:.3f}", f"{compressed.compress_seconds:.3f}"),
        ("prefill (s)", baseline.prefill_seconds, compressed.prefill_seconds,
         f"{baseline.prefill_seconds:.3f}", f"{compressed.prefill_seconds:.3f}"),
        ("time to first token (s)", baseline.ttft_seconds, compressed.ttft_seconds,
         f"{baseline.ttft_seconds:.2f}", f"{compressed.ttft_seconds:.2f}"),
        ("decoding (tokens/s)", baseline.decode_tokens_per_second, compressed.decode_tokens_per_second,
         f"{baseline.decode_tokens_per_second:.1f}", f"{compressed.decode_tokens_per_second:.1f}"),
        (f"peak memory (GiB, {memory})", baseline.peak_memory_bytes / gib, compressed.peak_memory_bytes / gib,
         f"{baseline.peak_memory_bytes / gib:.2f}", f"{compressed.peak_memory_bytes / gib:.2f}"),
    ]


def cost_chart(
    baseline: Stats,
    compressed: Stats,
    *,
    labels: tuple[str, str] = ("baseline", "compressed"),
    title: str | None = None,
    width: int = 1300,
    height: int = 520,
) -> Image.Image:
    """Baseline vs compressed, one bar panel per cost (tokens, FLOPs, times, rate, memory), in a
    grid of 2 x 4 panels on an RGB canvas ``width`` x ``height`` (plus a title line).

    Each bar carries its value; FLOPs follow `stc.flops` (LLM only, visual tokens, 100 decoded
    tokens), times are the ones `VideoLLM.answer` measured. Drawn with PIL, as every other picture
    of `stc.viz` (matplotlib with its constrained layout took 2.2-2.7 s a chart on this 2-core CPU
    beside a training run, most of a demo request on the tiny model; this takes ~0.1 s).
    """
    panels = _panels(baseline, compressed)
    cols, rows = 4, (len(panels) + 3) // 4
    head = 30 if title else 6
    canvas = Image.new("RGB", (width, head + height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((width // 2, 8), title, fill=TEXT, font=font(16), anchor="ma")
    name_font, value_font, label_font = font(14), font(13), font(12)
    cell_w, cell_h = width // cols, height // rows
    for k, (name, b, c, bt, ct) in enumerate(panels):
        x0, y0 = (k % cols) * cell_w, head + (k // cols) * cell_h
        draw.text((x0 + cell_w // 2, y0 + 4), name, fill=TEXT, font=name_font, anchor="ma")
        values = [float(v) if np.isfinite(v) and v > 0 else 0.0 for v in (b, c)]  # no bar for NaN, inf, < 0
        top = max(values) or 1.0
        plot_top, base = y0 + 46, y0 + cell_h - 28  # room for the values above and the labels below
        left, right = x0 + 30, x0 + cell_w - 30
        bar_w = (right - left) * 0.3
        draw.line([left, base, right, base], fill=_AXIS)
        for j, (value, text, label) in enumerate(zip(values, (bt, ct), labels)):
            centre = left + (right - left) * (0.25 + 0.5 * j)
            bar_top = base - round(value / top * (base - plot_top))
            if value > 0:
                draw.rectangle([centre - bar_w / 2, min(bar_top, base - 1), centre + bar_w / 2, base],
                               fill=_BAR_COLOURS[j])
            draw.text((centre, min(bar_top, base) - 4), text, fill=TEXT, font=value_font, anchor="md")
            draw.text((centre, base + 6), label, fill=TEXT, font=label_font, anchor="ma")
    return canvas
