"""The demo's "same cost, more frames" mode: its runner, the paged grid and the timeline strip,
its handler, and its ZeroGPU duration, on the offline tiny model."""

import pickle

import gradio as gr
import numpy as np
import pytest
from test_app import CLIP, TINY, import_app

from stc import STCConfig, viz
from stc import demo as logic
from stc.demo import gradio_overrides
from stc.demo.tabs import same_cost as same_cost_tab
from stc.results import Provenance

BUDGET, LONG = 600, 72  # 72 frames: past one window, so stc streams; the budget buys 3 frames at 196
TOKENS = 8  # the fewest the page allows


@pytest.fixture(scope="module")
def app():
    return import_app()


@pytest.fixture(scope="module")
def tiny(app):
    return app.state.pool.get(TINY)


@pytest.fixture(scope="module")
def result(tiny):
    return logic.run_same_cost(tiny, CLIP, "What is shown?", max_tokens=BUDGET, num_frames=LONG,
                               max_new_tokens=TOKENS)


def test_same_budget_stc_on_every_frame_baseline_on_what_it_buys(result):
    stc, base = result.stc.stats, result.baseline.stats
    # stc read all frames and sent exactly the budget into the LLM
    assert result.stc.config == STCConfig(max_tokens=BUDGET)
    assert stc.visual_tokens == LONG * 196 and stc.visual_tokens_stage1 == BUDGET
    per_frame = result.stc.provenance.tokens_per_frame  # counted after stage 2 (layer K)
    assert len(per_frame) == LONG and per_frame.sum() == stc.visual_tokens_stage2 == BUDGET // 2
    assert result.streamed and len(result.frames) == LONG
    # the baseline: floor(budget / tokens per frame) uniformly sampled frames, never over the budget
    assert len(result.baseline_index) == BUDGET // 196 == 3
    assert base.visual_tokens == base.visual_tokens_stage1 == 3 * 196 <= BUDGET
    assert result.baseline.provenance.status.shape[0] == 3
    assert list(result.baseline_index) == [12, 36, 60]  # the middle frame of each third
    assert result.labels == ["baseline, 3 frames", f"stc {BUDGET} tokens, {LONG} frames"]
    # plain data with small thumbnails: it crosses the ZeroGPU process boundary
    assert result.frames.shape[1] == logic.long.THUMB_HEIGHT and result.frames.dtype == np.uint8
    again = pickle.loads(pickle.dumps(result))
    assert again.stc.stats == stc and np.array_equal(again.baseline_index, result.baseline_index)
    rows = logic.cost_rows(result)
    assert [r[0] for r in rows] == result.labels and rows[0][1] == "588"
    assert rows[1][1].startswith(f"{BUDGET} → ")
    text = logic.same_cost_details(result)
    assert f"all {LONG} frames" in text and "3 uniformly sampled frames" in text and "StreamCompressor" in text


@pytest.mark.parametrize("budget, frames", [(196, 8), (195 * 4, 8), (4000, 16), (196, 1)])
def test_baseline_frames_are_the_largest_count_that_fits(tiny, budget, frames):
    from stc.video import Video

    video = Video(frames=np.zeros((frames, 32, 32, 3), np.uint8), timestamps=np.arange(frames, dtype=float), fps=1.0,
                  duration=float(frames))
    index, tokens = logic.baseline_frames(tiny, video, budget)
    assert len(index) == min(frames, max(1, budget // 196)) and tokens == 196 * len(index) <= max(budget, 196)
    assert np.all(np.diff(index) > 0)


@pytest.mark.parametrize("model_id", [logic.TINY_QWEN, logic.TINY_QWEN3_VL])
def test_qwen_tokens_come_from_its_own_grid(model_id):
    from stc.video import load_video

    qwen = logic.load_model(model_id)
    video = load_video(CLIP, num_frames=8)
    assert logic.visual_tokens(qwen, video) > 300  # not every frame fits: there is a frame more to try
    index, tokens = logic.baseline_frames(qwen, video, 300)
    assert tokens == logic.visual_tokens(qwen, video.take(index)) <= 300 and len(index) < 8
    more = video.take(np.sort(np.r_[index, np.setdiff1d(np.arange(8), index)[:1]]))
    assert logic.visual_tokens(qwen, more) > 300  # one frame more would not fit


def test_same_cost_on_qwen3_vl_encodes_every_frame_in_one_pass():
    """Qwen3-VL (not streamable: its processor sizes frames by the whole video) runs the same-cost
    mode in one pass: stc sends exactly the budget, the baseline what fits of it."""
    qwen3 = logic.load_model(logic.TINY_QWEN3_VL)
    frames, budget = 16, 300
    result = logic.run_same_cost(qwen3, CLIP, "What is shown?", max_tokens=budget, num_frames=frames,
                                 max_new_tokens=TOKENS)
    assert not result.streamed and len(result.frames) == frames
    assert result.stc.stats.visual_tokens_stage1 == budget
    assert 0 < result.baseline.stats.visual_tokens <= budget and len(result.baseline_index) < frames


def _provenance(frames: int, per_slot: int = 1) -> Provenance:
    slots = -(-frames // per_slot)
    rng = np.random.default_rng(0)
    status = rng.integers(0, 3, (slots, 3, 4)).astype(np.int8)
    slot = np.where(status > 0, np.arange(slots * 12).reshape(slots, 3, 4), -1)
    cluster = np.where(status == 2, slot, -1)
    return Provenance(status, cluster, slot, per_slot, np.arange(slots, dtype=float),
                      (status == 1).sum(axis=(1, 2)))


@pytest.mark.parametrize("frames, per_slot", [(150, 1), (64, 1), (9, 1), (131, 2)])
def test_pages_cover_every_frame_exactly_once(frames, per_slot):
    prov = _provenance(frames, per_slot)
    thumbs = np.full((frames, 18, 32, 3), 100, np.uint8)
    ranges = viz.page_ranges(frames, 64, per_slot)
    covered = np.concatenate([np.arange(a, b) for a, b in ranges])
    assert np.array_equal(covered, np.arange(frames))
    slices = [viz.slice_provenance(prov, a, b) for a, b in ranges]
    assert np.array_equal(np.concatenate([s.status for s in slices]), prov.status)
    assert np.array_equal(np.concatenate([s.tokens_per_frame for s in slices]), prov.tokens_per_frame)
    for page, (a, b) in enumerate(ranges):
        image = viz.retention_page(thumbs, prov, page, per_page=64, title=f"page {page + 1}")
        assert image.width > 100 and image.height > 50
    with pytest.raises(ValueError, match="page must be in"):
        viz.retention_page(thumbs, prov, len(ranges))
    strip = viz.tokens_timeline(prov, marks=[0, frames - 1], timestamps=np.arange(frames, dtype=float))
    assert strip.width >= 1000 and strip.height < 200


def test_result_pages_and_timeline(app, result):
    first, pages = same_cost_tab.page(result, 1)
    assert pages == 2 and first.width > 500
    assert same_cost_tab.page(result, 2)[0].height < first.height  # 8 frames on the last page, 64 on the first
    for bad in (0, 3, 1.5, "1"):
        with pytest.raises(ValueError, match="page must be"):
            same_cost_tab.page(result, bad)
    with pytest.raises(gr.Error, match="page must be a whole number in"):
        same_cost_tab.show_page(result, 3)


def long_args(video=CLIP, question="What is shown?", *, model=TINY, budget=BUDGET, frames=LONG, tokens=TOKENS):
    return [str(video) if video is not None else None, question, model, budget, frames, tokens]


def test_long_handler_returns_every_output(app):
    banner, base, stc, table, strip, grid, state, summary = app.same_cost.run(*long_args())
    assert "meaningless" in banner and isinstance(base, str) and base and isinstance(stc, str) and stc
    assert table["headers"] == logic.COST_HEADERS and [r[0] for r in table["data"]] == state.labels
    assert strip.width >= 1000 and grid.width > 500
    assert isinstance(state, logic.SameCost) and "Same cost, more frames" in summary
    # then the answers are named after what they read, and the page control spans the pages
    base_box, stc_box, page = same_cost_tab.controls_after(state)
    assert base_box.label == "baseline, 3 frames" and stc_box.label == f"stc {BUDGET} tokens, {LONG} frames"
    assert page.maximum == 2 and page.value == 1 and page.interactive
    # another page, drawn again from the state without running the model
    assert same_cost_tab.show_page(state, 2).height < grid.height
    # the cluster toggle: the page shown, drawn again with other marks; nothing to draw before a run
    off = same_cost_tab.redraw(state, 1, "off")
    assert off.size == grid.size and not np.array_equal(np.asarray(off), np.asarray(grid))
    assert np.array_equal(np.asarray(same_cost_tab.redraw(state, 1, "outline")), np.asarray(grid))
    assert same_cost_tab.redraw(None, 1, "off") == gr.update()
    with pytest.raises(gr.Error, match="clusters must be one of"):
        same_cost_tab.show_page(state, 1, "fill")
    assert gradio_overrides.input_problem(gr.Radio(["outline", "off"]), "fill", "refilled clusters").startswith(
        "unknown refilled clusters 'fill'")


@pytest.mark.parametrize("args, match", [
    (long_args(budget=100), "token budget must be in [196, 8192]"),
    (long_args(budget=9000), "token budget"),
    (long_args(frames=8), "frames must be in [16, 512]"),
    (long_args(frames=logic.CPU_MAX_FRAMES + 4), f"frames must be at most {logic.CPU_MAX_FRAMES}"),
    (long_args(model=logic.TINY_QWEN, frames=logic.ONE_PASS_MAX_FRAMES + 4), "encodes every frame in one pass"),
    (long_args(video=None), "upload a video"),
    (long_args(question=" "), "question"),
])
def test_long_handler_refuses_bad_input_in_one_line(app, args, match):
    import torch

    if "at most" in match and torch.cuda.is_available():
        pytest.skip("the CPU frame limit")
    with pytest.raises(gr.Error) as err:
        app.same_cost.run(*args)
    message = str(err.value.message)
    assert match in message and "\n" not in message and "Traceback" not in message
    with pytest.raises(gr.Error, match="first"):
        same_cost_tab.show_page(None, 1)


def test_zerogpu_duration_grows_with_frames_and_stays_within_the_caps():
    seven = logic.LLAVA_OV_7B
    default = logic.long_gpu_seconds(seven, "v", "q", logic.BUDGET_TOKENS[2], logic.LONG_FRAMES[2],
                                     logic.MAX_NEW_TOKENS[2], 120.0)
    assert default == 95 <= logic.ANONYMOUS_GPU_SECONDS  # the README's figure; fits an anonymous visitor's day
    asks = [logic.long_gpu_seconds(seven, "v", "q", 2048, f, 128) for f in (16, 64, 128, 256, 512)]
    assert asks == sorted(asks) and len(set(asks)) == len(asks)
    assert logic.long_gpu_seconds(seven, "v", "q", 8192, 64, 128) > logic.long_gpu_seconds(seven, "v", "q", 196, 64, 128)
    for model in (seven, logic.QWEN2_5_VL_7B, TINY):
        biggest = logic.long_gpu_seconds(model, "v", "q", logic.BUDGET_TOKENS[1], logic.LONG_FRAMES[1],
                                         logic.MAX_NEW_TOKENS[1])
        assert biggest <= logic.GPU_SECONDS_MAX <= 300  # one ZeroGPU call asks at most 5 minutes
    at_512 = logic.long_gpu_seconds(seven, "v", "q", 2048, 512, 128, 120.0)
    assert at_512 > logic.ANONYMOUS_GPU_SECONDS and "sign in" in logic.quota_note(at_512)


def test_run_label_reads_a_token_budget():
    assert logic.run_label(STCConfig(max_tokens=2048)) == "stc 2,048 tokens"
    assert logic.run_label(STCConfig(retention=0.02)) == "stc 2%"
    assert logic.budget_text(STCConfig(max_tokens=500, method="fastv")) == "500 tokens"


def test_client_runs_same_cost_on_a_real_clip(app):
    """Through the served app: the /long endpoint answers, and a bad budget is one line."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image
    from test_app import serving

    with serving(app) as url:
        client = Client(url, verbose=False)
        args = long_args()
        args[0] = handle_file(str(CLIP))
        out = client.predict(*args, api_name="/long")
        banner, base, stc, table, strip, grid, summary = out
        assert "meaningless" in banner and isinstance(base, str) and base and isinstance(stc, str) and stc
        assert [row[0] for row in table["data"]] == ["baseline, 3 frames", f"stc {BUDGET} tokens, {LONG} frames"]
        for path in (strip, grid):
            with Image.open(path) as image:
                assert image.format == "PNG" and image.width >= 1000
        assert f"all {LONG} frames" in summary
        bad = long_args(budget=10)
        bad[0] = handle_file(str(CLIP))
        with pytest.raises(AppError) as err:
            client.predict(*bad, api_name="/long")
        assert "token budget must be in [196, 8192]" in str(err.value) and "Traceback" not in str(err.value)
