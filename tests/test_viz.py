"""The retention grid and the cost chart draw what the provenance and stats say."""

import numpy as np
import pytest

from stc import viz
from stc.results import DROPPED, MERGED_AT_K, REFILLED, SELECTED, Provenance, Stats

GREY = 120


def provenance(status, cluster=None, slot=None, *, frames_per_slot=1, tokens=None):
    status = np.asarray(status, dtype=np.int8)
    s = status.shape[0]
    if cluster is None:
        cluster = np.where(status == REFILLED, 0, -1)
    if slot is None:
        slot = np.where(status == DROPPED, -1, np.arange(status.size).reshape(status.shape))
    return Provenance(
        status=status,
        cluster=np.asarray(cluster, dtype=np.int32),
        slot=np.asarray(slot, dtype=np.int32),
        frames_per_slot=frames_per_slot,
        timestamps=np.arange(s, dtype=np.float64),
        tokens_per_frame=np.asarray(tokens if tokens is not None else [1] * s),
    )


def frames(count, h=40, w=60):
    return np.full((count, h, w, 3), GREY, np.uint8)


def stats(**changes):
    base = dict(
        visual_tokens=6272, visual_tokens_stage1=6272, visual_tokens_stage2=6272, text_tokens=30, new_tokens=20,
        flops=41.4e12, flops_baseline=41.4e12, vision_seconds=2.0, vision_cached=False, compress_seconds=0.0,
        prefill_seconds=0.7, ttft_seconds=2.7, decode_tokens_per_second=27.6, peak_memory_bytes=3 * 2**30,
        peak_memory_kind="process_rss", inner_layer=None, device="cpu",
    )
    base.update(changes)
    return Stats(**base)


def textured(h=40, w=40, seed=0):
    """A frame with structure (gradients plus noise, nothing red), so that a patch's pixels can be
    recognised and a red cluster mark told apart from them."""
    yy, xx = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(-25, 26, (h, w, 3))
    image = np.stack([60 + xx, 60 + 4 * yy, 220 - 3 * xx], axis=-1) + noise
    return np.clip(image, 0, 255).astype(np.uint8)


# One 2x2 pool frame of 20-pixel patches: selected, refilled (cluster 7), merged at K (cluster 7), dropped.
FATES = np.array([[SELECTED, REFILLED], [MERGED_AT_K, DROPPED]])
FATE_CLUSTER = np.array([[-1, 7], [7, -1]])
FATE_SLOT = np.array([[0, 1], [1, -1]])
RED = np.array([255.0, 0.0, 0.0])


def paint(frame, mode):
    return viz.paint_patches(frame, FATES, FATE_CLUSTER, FATE_SLOT, {7: RED}, 40, 40, clusters=mode).astype(int)


def patch(image, r, c, inset=0):
    return image[r * 20 + inset : r * 20 + 20 - inset, c * 20 + inset : c * 20 + 20 - inset]


def correlation(a, b):
    """Mean over the colour channels of the correlation of two pictures' pixels."""
    a, b = np.reshape(a, (-1, 3)).astype(float), np.reshape(b, (-1, 3)).astype(float)
    return float(np.mean([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(3)]))


def reddish(pixels):
    """Share of pixels coloured like the red cluster mark."""
    pixels = np.asarray(pixels).astype(int)
    return float((pixels[..., 0] - pixels[..., 1] > 90).mean())


@pytest.mark.parametrize("mode", viz.CLUSTER_MODES)
def test_the_picture_stays_readable_under_every_fate(mode):
    frame = textured()
    tile = paint(frame, mode)
    assert tile.shape == (40, 40, 3)
    original = frame.astype(int)
    # Kept as itself: its pixels untouched inside a two-pixel green outline all around it.
    assert (patch(tile, 0, 0, inset=2) == patch(original, 0, 0, inset=2)).all()
    ring = np.ones((20, 20), bool)
    ring[2:-2, 2:-2] = False
    assert (patch(tile, 0, 0)[ring] == viz.STATUS_COLORS[SELECTED]).all()
    # Dropped: a dimmed copy of its pixels, not black.
    dropped, seen = patch(tile, 1, 1), patch(original, 1, 1)
    assert correlation(dropped, seen) > 0.95
    assert 0.25 < dropped.mean() / seen.mean() < 0.55 and dropped.max() > 60
    # Merged at layer K: dimmed a little (less than dropped), with white hatching over a few pixels.
    merged, under = patch(tile, 1, 0, inset=1), patch(original, 1, 0, inset=1)
    ratio = merged.sum(-1) / under.sum(-1)
    assert dropped.mean() / seen.mean() + 0.1 < np.median(ratio) < 0.9
    # Where the white lines run: seen on a flat frame painted the same way (light over a dimmed grey).
    grey = patch(paint(frames(1, 40, 40)[0], mode), 1, 0, inset=1).min(-1)
    hatched = grey > np.median(grey) + 30
    assert 0.05 < hatched.mean() < 0.3
    assert correlation(merged[~hatched], under[~hatched]) > 0.95  # between the lines, the picture
    # Refilled: most of its pixels are its own ("tint": a light wash the picture shows through).
    refilled, own = patch(tile, 0, 1), patch(original, 0, 1)
    if mode == "tint":  # inside the thin darker line between tokens
        inside, own_inside = refilled[1:-1, 1:-1], own[1:-1, 1:-1]
        assert correlation(inside, own_inside) > 0.95 and np.abs(inside - own_inside).mean() < 60
    else:
        assert (refilled == own).all(-1).mean() > 0.75


def test_refilled_patches_outline_tint_or_nothing():
    frame = textured()
    own = patch(frame.astype(int), 0, 1)
    assert reddish(frame) == 0

    outline = patch(paint(frame, "outline"), 0, 1)
    assert (outline[1:-1, 1:-1] == own[1:-1, 1:-1]).all()  # the inside untouched
    border = np.ones((20, 20), bool)
    border[1:-1, 1:-1] = False
    assert reddish(outline[border]) == 1.0  # a thin line in the cluster's red
    assert (outline != own).any(-1).mean() < 0.25

    tint = patch(paint(frame, "tint"), 0, 1)
    assert (tint[..., 0] - own[..., 0] > 30).mean() > 0.9  # every pixel pulled towards red
    assert correlation(tint[1:-1, 1:-1], own[1:-1, 1:-1]) > 0.95  # the picture still shows through

    off = paint(frame, "off")
    assert (patch(off, 0, 1) == own).all()
    # With clusters off no cluster colour appears anywhere (the merged patch included).
    assert reddish(off) == 0 and reddish(paint(frame, "outline")) > 0


def test_unknown_cluster_marks_are_refused():
    with pytest.raises(ValueError, match="clusters must be one of"):
        paint(textured(), "fill")
    with pytest.raises(ValueError, match="clusters must be one of"):
        viz.retention_grid(frames(2), provenance(np.full((2, 2, 2), REFILLED)), clusters="Outline")


def _near(image, colour, tolerance=30):
    pixels = np.asarray(image).astype(int)
    return int((np.abs(pixels - np.asarray(colour, dtype=int)).max(-1) <= tolerance).sum())


def test_grid_keeps_the_frames_and_marks_clusters_only_when_asked():
    # Four frames, every patch refilled into one of two clusters (left half, right half).
    status = np.full((4, 2, 4), REFILLED)
    cluster = np.broadcast_to(np.array([0, 0, 1, 1]), (4, 2, 4)).copy()
    pics = np.stack([textured(40, 60, seed) for seed in range(4)])
    p = provenance(status, cluster, slot=cluster, tokens=[2, 2, 2, 2])
    palette = viz.cluster_palette(2)
    grids = {mode: viz.retention_grid(pics, p, columns=4, tile_width=60, clusters=mode) for mode in viz.CLUSTER_MODES}
    assert grids["outline"].size == viz.retention_grid(pics, p, columns=4, tile_width=60).size  # the default
    for mode, grid in grids.items():
        pixels = np.asarray(grid).astype(int)
        for t in range(4):  # one row of tiles: pad 6, no title
            x = 6 + t * (60 + 6)
            tile = pixels[6 : 6 + 40, x : x + 60]
            same = (tile == pics[t]).all(-1).mean()
            assert correlation(tile, pics[t]) > 0.75, mode
            if mode == "off":
                assert same == 1.0
            elif mode == "outline":
                assert 0.75 < same < 1.0  # only the regions' outlines are drawn over the picture
            else:
                assert same < 0.1
            if mode == "tint":  # each half washed with its own cluster's colour
                for half, colour in zip((slice(0, 30), slice(30, 60)), palette.astype(int)):
                    moved = np.abs(tile[:, half].mean((0, 1)) - colour).sum()
                    assert moved < np.abs(pics[t][:, half].mean((0, 1)) - colour).sum() - 40
            else:  # each cluster's colour drawn (outline) or nowhere (off)
                marked = [_near(tile, c) - _near(pics[t], c) for c in palette]
                assert (min(marked) > 20) if mode == "outline" else (max(marked) == 0), (mode, marked)
        legend = pixels[-30:]  # its swatch for refilled patches: outlined in the first cluster's colour
        if mode != "tint":
            assert (_near(legend, palette[0]) > 0) == (mode == "outline")


def test_grids_and_pages_pass_the_cluster_marks_on():
    status = np.full((3, 2, 2), REFILLED)
    p = provenance(status, tokens=[1, 1, 1])
    cyan = viz.cluster_palette(1)[0]
    for draw in (lambda **kw: viz.retention_grids(frames(3), [p, p], titles=["a", "b"], **kw),
                 lambda **kw: viz.retention_page(frames(3), p, 0, **kw)):
        assert _near(draw(), cyan) > 100
        assert _near(draw(clusters="off"), cyan) == 0


def test_grid_has_a_tile_per_sampled_frame_and_respects_columns():
    p = provenance(np.full((5, 2, 3), SELECTED))
    one_row = viz.retention_grid(frames(5), p, columns=5, tile_width=60)
    two_rows = viz.retention_grid(frames(5), p, columns=3, tile_width=60)
    assert one_row.mode == "RGB"
    assert one_row.width > two_rows.width and two_rows.height > one_row.height
    titled = viz.retention_grid(frames(5), p, columns=5, tile_width=60, title="stc 2%")
    assert titled.height > one_row.height


def _red_pixels(image):
    return int((np.asarray(image) == viz.ZERO_TOKENS).all(-1).sum())


def test_frames_that_send_no_token_are_outlined_in_red():
    status = np.full((3, 2, 2), REFILLED)
    with_tokens = viz.retention_grid(frames(3), provenance(status, tokens=[2, 1, 1]), tile_width=60)
    one_empty = viz.retention_grid(frames(3), provenance(status, tokens=[3, 0, 1]), tile_width=60)
    two_empty = viz.retention_grid(frames(3), provenance(status, tokens=[4, 0, 0]), tile_width=60)
    # The legend shows the red swatch once; every empty frame adds an outline and a red count.
    assert _red_pixels(with_tokens) < _red_pixels(one_empty) < _red_pixels(two_empty)
    assert _red_pixels(one_empty) - _red_pixels(with_tokens) > 4 * 60


def test_temporal_patches_cover_two_sampled_frames_each():
    # Qwen2.5-VL: 3 pool frames of 2 sampled frames; 5 or 6 sampled frames fit, 8 do not.
    p = provenance(np.full((3, 2, 2), SELECTED), frames_per_slot=2)
    assert viz.retention_grid(frames(6), p, columns=6, tile_width=50).width == viz.retention_grid(
        frames(6), provenance(np.full((6, 2, 2), SELECTED)), columns=6, tile_width=50
    ).width
    viz.retention_grid(frames(5), p, tile_width=50)
    with pytest.raises(ValueError, match="do not match"):
        viz.retention_grid(frames(8), p)


def test_bad_frames_are_rejected():
    p = provenance(np.full((2, 2, 2), SELECTED))
    with pytest.raises(ValueError, match="uint8"):
        viz.retention_grid(np.zeros((2, 8, 8, 3), np.float32), p)
    with pytest.raises(ValueError, match="frames"):
        viz.retention_grid(np.zeros((0, 8, 8, 3), np.uint8), p)


def test_cluster_palette_is_distinct_and_avoids_the_selected_green():
    palette = viz.cluster_palette(40).astype(int)
    assert palette.shape == (40, 3)
    assert len({tuple(c) for c in palette}) == 40
    for r, g, b in palette:
        assert not (g > r + 40 and g > b + 40), (r, g, b)
    assert viz.cluster_palette(0).shape == (0, 3)


def test_cost_chart_draws_baseline_and_compressed():
    compressed = stats(visual_tokens_stage1=125, visual_tokens_stage2=63, flops=1.1e12, vision_cached=True,
                       compress_seconds=0.074, prefill_seconds=0.031, ttft_seconds=2.1,
                       decode_tokens_per_second=35.7, inner_layer=18)
    image = viz.cost_chart(stats(), compressed, labels=("baseline", "stc 2%"), title="LLaVA-OV-7B")
    assert image.mode == "RGB" and image.width > 600 and image.height > 300
    pixels = np.asarray(image)
    assert (pixels != 255).any(axis=-1).mean() > 0.02  # bars and text, not a blank canvas
    # the first panel (visual tokens): the grey baseline bar 6,272 tall, the blue one 125
    panel = pixels[:, : image.width // 4].astype(int)
    grey = (np.abs(panel - (154, 160, 166)).max(axis=-1) < 3).any(axis=1).sum()
    blue = (np.abs(panel - (31, 119, 180)).max(axis=-1) < 3).any(axis=1).sum()
    assert grey > 150 and 0 < blue and abs(blue / grey - 125 / 6272) < 0.02
