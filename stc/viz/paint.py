"""Painting one frame's patches by their fate, and what every picture shares: the status colours,
the cluster palette, the page's colours and font, and the input checks."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageFont

from ..results import DROPPED, MERGED_AT_K, REFILLED, SELECTED, Provenance

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
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
PATCH_GREY = (150, 150, 150)  # the legend's stand-in for a patch's pixels
DROPPED_LEVEL = 0.38  # brightness kept by a dropped patch: dark, still recognisable
MERGED_LEVEL = 0.72  # brightness kept by a patch merged away at layer K
HATCH = 0.4  # weight of the white hatching over a patch merged at layer K
TINT = 0.3  # weight of the cluster colour over a refilled patch ("tint")
LINE = 0.85  # weight of the cluster colour on a region's outline ("outline")


def font(size: int):
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


def check_inputs(frames: np.ndarray, provenance: Provenance) -> tuple[int, int]:
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
    out[dropped] = base[dropped] * DROPPED_LEVEL + 10
    clustered = (cl >= 0) & ~dropped
    if clusters != "off" and clustered.any():
        paint = np.zeros_like(base)
        for cid in np.unique(cl[clustered]):
            paint[cl == cid] = colours[int(cid)]
        if clusters == "tint":
            out[clustered] = (1 - TINT) * base[clustered] + TINT * paint[clustered]
    merged = st == MERGED_AT_K
    if merged.any():
        yy, xx = np.mgrid[0:height, 0:width]
        out[merged] *= MERGED_LEVEL
        hatch = merged & (((xx + yy) % 8) == 0)
        out[hatch] = (1 - HATCH) * out[hatch] + HATCH * np.asarray(STATUS_COLORS[MERGED_AT_K], dtype=np.float32)
    if clusters == "outline" and clustered.any():
        # One thin line in the cluster's colour inside each refilled token's region (patches
        # sharing a stage-1 slot form one region), on both sides of an edge where patches are big
        # enough; a token merged away at layer K keeps only its hatching.
        line = clustered & (st == REFILLED) & _inner_edge(sl, 1, border=True, sides=(patch_h >= 5, patch_w >= 5))
        out[line] = (1 - LINE) * out[line] + LINE * paint[line]
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
