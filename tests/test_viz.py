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


def test_each_fate_is_painted_distinctly():
    # One 2x2 pool frame: selected, refilled (cluster 7), merged at K (cluster 7), dropped.
    status = np.array([[SELECTED, REFILLED], [MERGED_AT_K, DROPPED]])
    cluster = np.array([[-1, 7], [7, -1]])
    slot = np.array([[0, 1], [1, -1]])
    colours = {7: np.array([255.0, 0.0, 0.0])}
    tile = viz.paint_patches(frames(1, 40, 40)[0], status, cluster, slot, colours, 40, 40).astype(int)
    assert tile.shape == (40, 40, 3)

    def centre(r, c):
        return tile[r * 20 + 6 : r * 20 + 14, c * 20 + 6 : c * 20 + 14].reshape(-1, 3)

    selected, refilled, merged, dropped = centre(0, 0), centre(0, 1), centre(1, 0), centre(1, 1)
    assert np.abs(selected - GREY).max() <= 1  # kept pixels stay as they were
    assert (refilled[:, 0] > refilled[:, 1] + 60).all()  # tinted with its cluster's red
    assert dropped.max() < 50  # near black
    # Merged at K: dimmer than the plain refilled patch, with white hatching.
    assert np.median(merged.sum(1)) < np.median(refilled.sum(1))
    assert (merged.min(1) > 180).any()
    # The kept patch is outlined in the "selected" green.
    assert (tile[0, :20] == viz.STATUS_COLORS[SELECTED]).all(1).any()


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
    pytest.importorskip("matplotlib")
    compressed = stats(visual_tokens_stage1=125, visual_tokens_stage2=63, flops=1.1e12, vision_cached=True,
                       compress_seconds=0.074, prefill_seconds=0.031, ttft_seconds=2.1,
                       decode_tokens_per_second=35.7, inner_layer=18)
    image = viz.cost_chart(stats(), compressed, labels=("baseline", "stc 2%"), title="LLaVA-OV-7B")
    assert image.mode == "RGB" and image.width > 600 and image.height > 300
    pixels = np.asarray(image)
    assert (pixels != 255).any(axis=-1).mean() > 0.02  # bars and text, not a blank canvas
