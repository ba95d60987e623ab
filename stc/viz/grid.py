"""The token-retention grid: every sampled frame with the fate of each of its patches and the
tokens it sends to the LLM (`retention_grid`), several methods stacked on the same frames
(`retention_grids`), and one page of a long video's grid (`page_ranges`, `slice_provenance`,
`retention_page`)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ..results import DROPPED, MERGED_AT_K, REFILLED, SELECTED, Provenance
from .paint import (
    BACKGROUND, CLUSTER_MODES, HATCH, MERGED_LEVEL, PATCH_GREY, STATUS_COLORS, TEXT, TINT, ZERO_TOKENS,
    check_inputs, cluster_palette, font, paint_patches,
)


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
    slots, per_slot = check_inputs(frames, provenance)
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
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    small, big = font(12), font(15)
    if title:
        draw.text((pad, 5), title, fill=TEXT, font=big)

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
        colour = ZERO_TOKENS if k == 0 else TEXT
        draw.text((x + 1, y + tile_h + 2), f"{name}{when}", fill=TEXT, font=small)
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
         "off": (PATCH_GREY, refilled, "fill")}[clusters],
        (STATUS_COLORS[MERGED_AT_K], f"merged at layer K ({totals[MERGED_AT_K]})", "hatch"),
        (STATUS_COLORS[DROPPED], f"dropped, dimmed ({totals[DROPPED]})", "fill"),
        (ZERO_TOKENS, "frame sends 0 tokens", "outline"),
    ]
    for colour, text, kind in items:
        box = [x, y, x + 14, y + 14]
        if kind == "outline":
            draw.rectangle(box, fill=(90, 90, 90), outline=colour, width=2)
        elif kind == "thin":
            draw.rectangle(box, fill=PATCH_GREY, outline=colour, width=1)
        elif kind == "tint":
            draw.rectangle(box, fill=tuple(round((1 - TINT) * g + TINT * c) for g, c in zip(PATCH_GREY, colour)))
        elif kind == "hatch":  # a mid-grey patch merged at layer K: dimmed, hatched
            dim = tuple(round(g * MERGED_LEVEL) for g in PATCH_GREY)
            draw.rectangle(box, fill=dim)
            line = tuple(round((1 - HATCH) * d + HATCH * c) for d, c in zip(dim, colour))
            for o in range(-14, 15, 7):
                draw.line([x + max(o, 0), y + max(-o, 0), x + min(14, 14 + o), y + min(14, 14 - o)],
                          fill=line, width=1)
        else:
            draw.rectangle(box, fill=colour)
        draw.text((x + 19, y + 1), text, fill=TEXT, font=small)
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
    canvas = Image.new("RGB", (width, sum(b.height for b in blocks) + gap * (len(blocks) - 1)), BACKGROUND)
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
