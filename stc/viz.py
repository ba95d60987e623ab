"""Pictures of one compressed answer: the token-retention grid and the cost comparison chart.

`retention_grid` draws every sampled frame with the fate of each of its patches (kept as
selected, merged into a refilled DPC-kNN token, merged away at layer K, dropped) and the number
of tokens the frame sends to the LLM, lightly enough that the picture stays readable when
almost every patch is merged (by default a thin line in the cluster's colour around each refilled
token's region; `CLUSTER_MODES`); a frame that sends none is framed in red, because at ultra-low
retention that is the method working, not a bug. `retention_grids` stacks the grids of several
methods on the same frames, one block each. For hundreds of frames, `retention_page` draws one
page of the grid (`page_ranges`, `slice_provenance`) and `tokens_timeline` every frame at once
as a strip of tokens kept per frame. `cost_chart` puts the baseline and
the compressed run side by side, one panel per cost. Both return PIL images and read only
`stc.Provenance` / `stc.Stats`, so they run anywhere (the app, a notebook, a report).
"""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .results import DROPPED, MERGED_AT_K, REFILLED, SELECTED, Provenance, Stats

__all__ = ["CLUSTER_MODES", "STATUS_COLORS", "ZERO_TOKENS", "cluster_palette", "cost_chart", "page_ranges",
           "paint_patches", "retention_grid", "retention_grids", "retention_page", "slice_provenance",
           "tokens_timeline"]

# How a patch merged into a refilled token shows its cluster (`paint_patches`); the first is the default.
CLUSTER_MODES = ("outline", "tint", "off")
# Colours of the legend; refilled patches take their cluster's colour instead.
STATUS_COLORS = {
    SELECTED: (57, 255, 20),  # outline of a patch kept as itself
    REFILLED: (80, 160, 255),  # legend swatch only
    MERGED_AT_K: (255, 255, 255),  # hatching over what layer K merged away
    DROPPED: (67, 67, 67),  # legend swatch: a mid-grey patch, dimmed
}
ZERO_TOKENS = (255, 40, 40)  # frame outline and label when a frame sends no token
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_PATCH_GREY = (150, 150, 150)  # the legend's stand-in for a patch's pixels
_DROPPED_LEVEL = 0.38  # brightness kept by a dropped patch: dark, still recognisable
_MERGED_LEVEL = 0.72  # brightness kept by a patch merged away at layer K
_HATCH = 0.4  # weight of the white hatching over a patch merged at layer K
_TINT = 0.3  # weight of the cluster colour over a refilled patch ("tint")
_LINE = 0.85  # weight of the cluster colour on a region's outline ("outline")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def cluster_palette(count: int) -> np.ndarray:
    """[count, 3] uint8 distinct colours, none of them the selected-outline green.

    Hues step by the golden ratio (neighbouring cluster ids never look alike) over the hue
    circle minus the green band.
    """
    colours = np.zeros((max(count, 0), 3), dtype=np.uint8)
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0
        hue = 0.5 + hue * 0.7  # skip hues 0.2 .. 0.5 (greens and teals)
        lightness = 0.55 if i % 2 == 0 else 0.68
        r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, 0.95)
        colours[i] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def _check(frames: np.ndarray, provenance: Provenance) -> tuple[int, int]:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 array [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    status = np.asarray(provenance.status)
    if status.ndim != 3:
        raise ValueError(f"provenance.status must be [S, gh, gw], got shape {list(status.shape)}")
    per_slot = int(provenance.frames_per_slot)
    if per_slot < 1:
        raise ValueError(f"provenance.frames_per_slot must be >= 1, got {per_slot}")
    slots = status.shape[0]
    if not (slots - 1) * per_slot < len(frames) <= slots * per_slot:
        raise ValueError(
            f"{len(frames)} frames do not match {slots} pool frames of {per_slot} frame(s) each"
        )
    return slots, per_slot


def _inner_edge(labels: np.ndarray, thickness: int, *, border: bool,
                sides: tuple[bool, bool] = (True, True)) -> np.ndarray:
    """Pixels within ``thickness`` pixels of the edge of their region (a run of equal labels), on
    the region's own side. ``border``: the tile's own edge counts as a region edge. ``sides``
    (rows, columns): False marks only the bottom / right edge along that axis (for patches too
    small to carry a line on both sides)."""
    edge = np.zeros(labels.shape, dtype=bool)
    height, width = labels.shape
    for d in range(1, thickness + 1):
        if d < height:
            edge[:-d, :] |= labels[:-d, :] != labels[d:, :]
            if sides[0]:
                edge[d:, :] |= labels[d:, :] != labels[:-d, :]
        if d < width:
            edge[:, :-d] |= labels[:, :-d] != labels[:, d:]
            if sides[1]:
                edge[:, d:] |= labels[:, d:] != labels[:, :-d]
    if border:
        t = min(thickness, height, width)
        edge[:t, :] = edge[-t:, :] = True
        edge[:, :t] = edge[:, -t:] = True
    return edge


def paint_patches(frame: np.ndarray, status: np.ndarray, cluster: np.ndarray, slot: np.ndarray,
                  colours: dict[int, np.ndarray], width: int, height: int, *,
                  clusters: str = "outline") -> np.ndarray:
    """One frame resized to [height, width, 3] uint8 with its patches' fates painted on it.

    status / cluster / slot: [gh, gw] arrays of one pool frame (see `stc.Provenance`);
    colours: cluster id -> RGB of every cluster id present. The frame stays readable: a patch
    kept as itself keeps its pixels inside a green outline, patches merged at layer K are dimmed
    a little and hatched white, dropped ones are dimmed to a dark but recognisable copy. Patches
    merged into a refilled token keep their pixels and are marked by ``clusters``: "outline"
    (default) draws a thin line in the cluster's colour around each token's region, "tint" lays
    a light wash of the cluster's colour over them, "off" leaves them unmarked.
    """
    if clusters not in CLUSTER_MODES:
        raise ValueError(f"clusters must be one of {', '.join(CLUSTER_MODES)}, got {clusters!r}")
    base = np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR), dtype=np.float32)
    gh, gw = status.shape
    rows = np.minimum(np.arange(height) * gh // height, gh - 1)
    cols = np.minimum(np.arange(width) * gw // width, gw - 1)
    st = status[rows[:, None], cols[None, :]]
    cl = cluster[rows[:, None], cols[None, :]]
    sl = slot[rows[:, None], cols[None, :]]
    patch_h, patch_w = height / gh, width / gw

    out = base.copy()
    dropped = st == DROPPED
    out[dropped] = base[dropped] * _DROPPED_LEVEL + 10
    clustered = (cl >= 0) & ~dropped
    if clusters != "off" and clustered.any():
        paint = np.zeros_like(base)
        for cid in np.unique(cl[clustered]):
            paint[cl == cid] = colours[int(cid)]
        if clusters == "tint":
            out[clustered] = (1 - _TINT) * base[clustered] + _TINT * paint[clustered]
    merged = st == MERGED_AT_K
    if merged.any():
        yy, xx = np.mgrid[0:height, 0:width]
        out[merged] *= _MERGED_LEVEL
        hatch = merged & (((xx + yy) % 8) == 0)
        out[hatch] = (1 - _HATCH) * out[hatch] + _HATCH * np.asarray(STATUS_COLORS[MERGED_AT_K], dtype=np.float32)
    if clusters == "outline" and clustered.any():
        # One thin line in the cluster's colour inside each refilled token's region (patches
        # sharing a stage-1 slot form one region), on both sides of an edge where patches are big
        # enough; a token merged away at layer K keeps only its hatching.
        line = clustered & (st == REFILLED) & _inner_edge(sl, 1, border=True, sides=(patch_h >= 5, patch_w >= 5))
        out[line] = (1 - _LINE) * out[line] + _LINE * paint[line]
    elif clusters == "tint":
        line = _inner_edge(sl, 1, border=False) & ~dropped  # a thin darker line between tokens
        out[line] *= 0.7

    # A patch kept as itself: a bright outline, two pixels wide where the patch is big enough.
    selected = st == SELECTED
    if selected.any():
        thickness = 2 if min(patch_h, patch_w) >= 8 else 1
        sel_edge = selected & _inner_edge(np.where(selected, sl, -1), thickness, border=True)
        out[sel_edge] = STATUS_COLORS[SELECTED]
    return np.clip(out, 0, 255).astype(np.uint8)


def retention_grid(
    frames: np.ndarray,
    provenance: Provenance,
    *,
    timestamps=None,
    tile_width: int = 176,
    columns: int | None = None,
    title: str | None = None,
    first: int = 0,
    cluster_ids=None,
    clusters: str = "outline",
) -> Image.Image:
    """The token-retention grid of one compressed answer.

    Args:
        frames: uint8 [T, H, W, 3], the sampled frames (thumbnails are fine: only the aspect
            ratio matters). T must match the provenance: S pool frames of
            ``provenance.frames_per_slot`` sampled frames each (the last may be short).
        provenance: `stc.Provenance` of the compressed answer.
        timestamps: optional float [T] seconds of each frame, else the pool frames' starts.
        tile_width: width of one frame's tile in pixels.
        columns: tiles per row (default: up to 8).
        title: one line drawn above the grid.
        first: the index of ``frames[0]`` in the whole video (a page of a long one: labels
            count from it).
        cluster_ids: every cluster id of the whole answer (a page: so that each cluster keeps
            its colour on every page); default: those in ``provenance``.
        clusters: how a patch merged into a refilled token shows its cluster (`CLUSTER_MODES`):
            "outline" (default: a thin line in the cluster's colour around each token's
            region, the picture untouched), "tint" (a light wash of the colour) or "off".
    Returns:
        An RGB image: every frame with its patches painted by fate (see the legend drawn at its
        bottom) and a label ``#i  t  k tok``, k = the tokens that enter the LLM from its pool
        frame; k = 0 is outlined in red.
    """
    frames = np.asarray(frames)
    if clusters not in CLUSTER_MODES:
        raise ValueError(f"clusters must be one of {', '.join(CLUSTER_MODES)}, got {clusters!r}")
    slots, per_slot = _check(frames, provenance)
    status = np.asarray(provenance.status)
    cluster = np.asarray(provenance.cluster)
    slot = np.asarray(provenance.slot)
    counts = np.asarray(provenance.tokens_per_frame).astype(int)
    if timestamps is None:
        starts = np.asarray(provenance.timestamps, dtype=float)
        timestamps = [starts[t // per_slot] if t // per_slot < len(starts) else float("nan") for t in range(len(frames))]
    timestamps = np.asarray(timestamps, dtype=float)

    ids = np.unique(cluster[cluster >= 0] if cluster_ids is None else np.asarray(cluster_ids))
    palette = cluster_palette(len(ids))
    colours = {int(cid): palette[i].astype(np.float32) for i, cid in enumerate(ids)}

    count = len(frames)
    columns = columns or min(8, count)
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    rows = math.ceil(count / columns)
    h, w = frames.shape[1:3]
    tile_w = int(tile_width)
    tile_h = max(8, round(tile_w * h / w))
    pad, label_h, border = 6, 18, 3
    title_h = 26 if title else 0
    legend_h = 30
    width = columns * (tile_w + pad) + pad
    height = title_h + rows * (tile_h + label_h + pad) + pad + legend_h
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small, big = _font(12), _font(15)
    if title:
        draw.text((pad, 5), title, fill=_TEXT, font=big)

    for t in range(count):
        s = t // per_slot
        r, c = divmod(t, columns)
        x = pad + c * (tile_w + pad)
        y = title_h + pad + r * (tile_h + label_h + pad)
        tile = paint_patches(frames[t], status[s], cluster[s], slot[s], colours, tile_w, tile_h, clusters=clusters)
        canvas.paste(Image.fromarray(tile), (x, y))
        k = int(counts[s]) if s < len(counts) else 0
        if per_slot > 1:
            lo, hi = first + s * per_slot + 1, first + min((s + 1) * per_slot, count)
            name = f"#{lo}-{hi}" if hi > lo else f"#{lo}"
        else:
            name = f"#{first + t + 1}"
        when = "" if math.isnan(timestamps[t]) else f"  {timestamps[t]:.1f}s"
        colour = ZERO_TOKENS if k == 0 else _TEXT
        draw.text((x + 1, y + tile_h + 2), f"{name}{when}", fill=_TEXT, font=small)
        draw.text((x + tile_w - 1, y + tile_h + 2), f"{k} tok", fill=colour, font=small, anchor="ra")
        if k == 0:
            draw.rectangle([x - 2, y - 2, x + tile_w + 1, y + tile_h + 1], outline=ZERO_TOKENS, width=border)

    # Legend with the patch count of each fate.
    totals = np.bincount(status.ravel().astype(np.int64), minlength=4)
    y = height - legend_h + 8
    x = pad
    swatch = tuple(int(v) for v in palette[0]) if len(palette) else STATUS_COLORS[REFILLED]
    refilled = f"merged into a refilled token ({totals[REFILLED]})"
    items = [
        (STATUS_COLORS[SELECTED], f"kept ({totals[SELECTED]})", "outline"),
        {"outline": (swatch, refilled + ", outline colour = cluster", "thin"),
         "tint": (swatch, refilled + ", tint = cluster", "tint"),
         "off": (_PATCH_GREY, refilled, "fill")}[clusters],
        (STATUS_COLORS[MERGED_AT_K], f"merged at layer K ({totals[MERGED_AT_K]})", "hatch"),
        (STATUS_COLORS[DROPPED], f"dropped, dimmed ({totals[DROPPED]})", "fill"),
        (ZERO_TOKENS, "frame sends 0 tokens", "outline"),
    ]
    for colour, text, kind in items:
        box = [x, y, x + 14, y + 14]
        if kind == "outline":
            draw.rectangle(box, fill=(90, 90, 90), outline=colour, width=2)
        elif kind == "thin":
            draw.rectangle(box, fill=_PATCH_GREY, outline=colour, width=1)
        elif kind == "tint":
            draw.rectangle(box, fill=tuple(round((1 - _TINT) * g + _TINT * c) for g, c in zip(_PATCH_GREY, colour)))
        elif kind == "hatch":  # a mid-grey patch merged at layer K: dimmed, hatched
            dim = tuple(round(g * _MERGED_LEVEL) for g in _PATCH_GREY)
            draw.rectangle(box, fill=dim)
            line = tuple(round((1 - _HATCH) * d + _HATCH * c) for d, c in zip(dim, colour))
            for o in range(-14, 15, 7):
                draw.line([x + max(o, 0), y + max(-o, 0), x + min(14, 14 + o), y + min(14, 14 - o)],
                          fill=line, width=1)
        else:
            draw.rectangle(box, fill=colour)
        draw.text((x + 19, y + 1), text, fill=_TEXT, font=small)
        x += 19 + int(draw.textlength(text, font=small)) + 16
    return canvas


def retention_grids(
    frames: np.ndarray,
    provenances,
    *,
    titles,
    timestamps=None,
    tile_width: int = 176,
    columns: int | None = None,
    gap: int = 14,
    clusters: str = "outline",
) -> Image.Image:
    """Several answers' retention grids over the same frames in one image, one block per answer
    from top to bottom (each block is `retention_grid` with its title and legend), separated by
    ``gap`` pixels and a rule. ``provenances`` and ``titles`` are sequences of equal length;
    ``clusters``: how refilled patches are marked (`retention_grid`)."""
    provenances, titles = list(provenances), list(titles)
    if not provenances or len(provenances) != len(titles):
        raise ValueError(f"need one title per provenance, got {len(provenances)} provenances and {len(titles)} titles")
    blocks = [retention_grid(frames, p, timestamps=timestamps, tile_width=tile_width, columns=columns, title=t,
                             clusters=clusters)
              for p, t in zip(provenances, titles)]
    width = max(b.width for b in blocks)
    canvas = Image.new("RGB", (width, sum(b.height for b in blocks) + gap * (len(blocks) - 1)), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for i, block in enumerate(blocks):
        if i:
            draw.line([(6, y - gap // 2), (width - 6, y - gap // 2)], fill=(170, 170, 170), width=2)
        canvas.paste(block, (0, y))
        y += block.height + gap
    return canvas


# --------------------------------------------------------------------------------------------
# Hundreds of frames: the grid a page at a time, and every frame at once as a strip.
# --------------------------------------------------------------------------------------------


def page_ranges(count: int, per_page: int = 64, frames_per_slot: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of each page of ``count`` frames, ``per_page`` each (rounded down to whole
    pool frames of ``frames_per_slot`` frames): every frame on exactly one page, in order."""
    if count < 1 or per_page < 1 or frames_per_slot < 1:
        raise ValueError(f"need count, per_page and frames_per_slot >= 1, got {count}, {per_page}, {frames_per_slot}")
    step = max(frames_per_slot, per_page - per_page % frames_per_slot)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def slice_provenance(provenance: Provenance, start: int, stop: int) -> Provenance:
    """The provenance of sampled frames [start, stop): the pool frames holding them (``start``
    a multiple of ``frames_per_slot``). Cluster and slot ids stay those of the whole answer."""
    per_slot = int(provenance.frames_per_slot)
    if start % per_slot or not 0 <= start < stop:
        raise ValueError(f"a slice must start on a pool frame (a multiple of {per_slot}) before its stop, "
                         f"got [{start}, {stop})")
    a, b = start // per_slot, -(-stop // per_slot)
    return Provenance(
        status=np.asarray(provenance.status)[a:b],
        cluster=np.asarray(provenance.cluster)[a:b],
        slot=np.asarray(provenance.slot)[a:b],
        frames_per_slot=per_slot,
        timestamps=np.asarray(provenance.timestamps)[a:b],
        tokens_per_frame=np.asarray(provenance.tokens_per_frame)[a:b],
    )


def retention_page(
    frames: np.ndarray,
    provenance: Provenance,
    page: int,
    *,
    per_page: int = 64,
    timestamps=None,
    tile_width: int = 128,
    columns: int = 8,
    title: str | None = None,
    clusters: str = "outline",
) -> Image.Image:
    """Page ``page`` (0-based) of the retention grid of a long video: `retention_grid` of the
    frames in `page_ranges`' ``page``-th range, labelled with their place in the whole video,
    each cluster in the same colour on every page (``clusters``: how, see `retention_grid`)."""
    ranges = page_ranges(len(frames), per_page, int(provenance.frames_per_slot))
    if not 0 <= page < len(ranges):
        raise ValueError(f"page must be in [1, {len(ranges)}], got {page + 1}")
    start, stop = ranges[page]
    cluster = np.asarray(provenance.cluster)
    times = None if timestamps is None else np.asarray(timestamps, dtype=float)[start:stop]
    return retention_grid(frames[start:stop], slice_provenance(provenance, start, stop), timestamps=times,
                          tile_width=tile_width, columns=min(columns, stop - start), title=title, first=start,
                          cluster_ids=np.unique(cluster[cluster >= 0]), clusters=clusters)


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
    canvas = Image.new("RGB", (plot_w + 2 * pad, top + bar_h + 8 + axis), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small = _font(12)
    if title:
        draw.text((pad, 4), title, fill=_TEXT, font=_font(15))
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
    draw.line([pad, base, pad + plot_w, base], fill=(120, 120, 120))
    ends = ["#1", f"#{slots * per_slot}" if per_slot > 1 else f"#{slots}"]
    if timestamps is not None and len(timestamps):
        ends = [f"{ends[0]} {float(timestamps[0]):.1f}s", f"{ends[1]} {float(timestamps[-1]):.1f}s"]
    zero = int((counts == 0).sum())
    middle = (f"bar = tokens sent to the LLM (max {peak}); red: {zero} frame{'s' * (zero != 1)} send none"
              + ("; blue ticks: " + marks_label if marks is not None else ""))
    y = base + 8
    draw.text((pad, y), ends[0], fill=_TEXT, font=small)
    draw.text((pad + plot_w // 2, y), middle, fill=_TEXT, font=small, anchor="ma")
    draw.text((pad + plot_w, y), ends[1], fill=_TEXT, font=small, anchor="ra")
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
) -> Image.Image:
    """Baseline vs compressed, one bar panel per cost (tokens, FLOPs, times, rate, memory).

    Each bar carries its value; FLOPs follow `stc.flops` (LLM only, visual tokens, 100 decoded
    tokens), times are the ones `VideoLLM.answer` measured. Needs matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = _panels(baseline, compressed)
    fig = Figure(figsize=(13, 5.2), dpi=100, layout="constrained")
    axes = fig.subplots(2, 4)
    colours = ("#9aa0a6", "#1f77b4")
    for ax, (name, b, c, bt, ct) in zip(axes.ravel(), panels):
        values = [max(float(b), 0.0), max(float(c), 0.0)]
        bars = ax.bar([0, 1], values, color=colours, width=0.6)
        top = max(values) or 1.0
        ax.set_ylim(0, top * 1.28)
        for bar, text in zip(bars, (bt, ct)):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + top * 0.03, text,
                    ha="center", va="bottom", fontsize=8.5)
        ax.set_xticks([0, 1], labels)
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
