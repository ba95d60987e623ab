"""The demo: its logic (stc.demo), its handler, and the app served in-process and driven through
gradio_client on a real clip with the offline tiny model (loopback only)."""

import importlib.util
import os
import pickle
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stc import STCConfig
from stc import demo as logic
from stc.demo.tabs import single as single_tab

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "earth_rotation.mp4"
TINY = logic.TINY_LLAVA
FRAMES, TOKENS = 8, 8


_APP = {}


def import_app():
    """app.py's app (`stc.demo.tabs.DemoApp`) on the offline tiny model, built once per process:
    importing app.py loads nothing; its `create_app` reads the flags, loads the model and builds
    the page."""
    if "app" in _APP:
        return _APP["app"]
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    module = sys.modules.get("app")
    if module is None or Path(getattr(module, "__file__", "")) != ROOT / "app.py":
        spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["app"] = module
        spec.loader.exec_module(module)
        assert module.POOL.loaded == []  # nothing happens at import
    _APP["app"] = module.create_app(["--model", TINY])
    return _APP["app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    return import_app()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty cache: what a fresh offline machine sees."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import, so patched


def run_args(video=CLIP, question="What is shown?", *, model=TINY, retention=2, frames=FRAMES, method="stc",
             inner_layer=None, tokens=TOKENS):
    return [str(video) if video is not None else None, question, model, retention, frames, method, 0.7, 0.3, 7,
            inner_layer, 0.5, 0.5, tokens]


# --- which model --------------------------------------------------------------------------------


def test_offline_flag_answers_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    reachable, why = logic.hub_reachable()
    assert not reachable and "HF_HUB_OFFLINE" in why
    assert time.perf_counter() - start < 0.1


def test_unreachable_endpoint_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    start = time.perf_counter()
    reachable, why = logic.hub_reachable(timeout=2.0)
    assert not reachable and "127.0.0.1" in why
    assert time.perf_counter() - start < 3.0


def test_hub_model_without_hub_or_cache_is_one_line_error(offline):
    start = time.perf_counter()
    with pytest.raises(logic.ModelUnavailable) as err:
        logic.load_model(logic.LLAVA_OV_05B)
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert "\n" not in message and logic.LLAVA_OV_05B in message and "cache" in message


def test_cached_checkpoint_loads_offline_under_its_hub_id(offline, tmp_path):
    from huggingface_hub import constants

    # A hub cache entry holding (a tiny stand-in for) the 0.5B checkpoint.
    tiny = logic.load_model(TINY)
    repo = Path(constants.HF_HUB_CACHE) / "models--llava-hf--llava-onevision-qwen2-0.5b-ov-hf"
    snapshot = repo / "snapshots" / ("0" * 40)
    tiny.model.save_pretrained(snapshot)
    tiny.processor.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)

    llm = logic.load_model(logic.LLAVA_OV_05B)
    assert llm.model_id == logic.LLAVA_OV_05B and not llm.is_tiny
    assert "meaningless" not in logic.banner(llm)


def test_default_falls_back_to_the_toy_model_with_a_banner_that_says_so(offline):
    """A checkout has the trained toy checkpoint: the offline fallback answers for real (about
    synthetic shapes), and the banner says what it is and why it runs."""
    assert logic.FALLBACK_MODEL == logic.TOY_LLAVA and (logic.TOY_PATH / "config.json").is_file()
    pool = logic.ModelPool()
    loaded = pool.load_default(logic.LLAVA_OV_05B)
    assert loaded.llm.model_id == logic.TOY_LLAVA and not loaded.llm.is_tiny
    assert loaded.requested == logic.LLAVA_OV_05B and "hub" in loaded.fallback_reason
    text = logic.banner(loaded.llm, fallback_reason=loaded.fallback_reason)
    assert "toy model" in text and "synthetic" in text and "could not be loaded" in text and "cpu" in text
    assert "meaningless" not in text
    tiny = pool.get(TINY)  # the random-weight model is still offered, and still called meaningless
    assert "meaningless" in logic.banner(tiny) and "toy" not in logic.banner(tiny)
    assert "meaningless" not in logic.banner(SimpleNamespace(model_id="x", is_tiny=False, device=loaded.llm.device))


def test_default_model_id_precedence(monkeypatch):
    monkeypatch.delenv("STC_MODEL", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert logic.default_model_id() == logic.LLAVA_OV_05B
    monkeypatch.setenv("SPACE_ID", "someone/stc")
    assert logic.default_model_id() == logic.LLAVA_OV_7B
    monkeypatch.setenv("STC_MODEL", TINY)
    assert logic.default_model_id() == TINY
    assert logic.default_model_id("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"


def test_pool_reuses_models_and_keeps_the_default():
    loads = []

    def loader(model_id, device):
        loads.append(model_id)
        return SimpleNamespace(model_id=model_id)

    pool = logic.ModelPool(capacity=2, loader=loader)
    pool.load_default("a")
    assert pool.get("a") is pool.default.llm and loads == ["a"]
    pool.get("b")
    pool.get("c")  # over capacity: "b" goes, the default stays
    assert pool.loaded == ["a", "c"]
    pool.get("b")
    assert loads == ["a", "b", "c", "b"]
    with pytest.raises(logic.ModelUnavailable):
        pool.get("  ")


def test_pool_default_never_raises():
    def loader(model_id, device):
        if model_id != logic.FALLBACK_MODEL:
            raise logic.ModelUnavailable(f"cannot load {model_id}: no")
        return SimpleNamespace(model_id=model_id)

    loaded = logic.ModelPool(loader=loader).load_default("missing/model")
    assert loaded.llm.model_id == logic.FALLBACK_MODEL and loaded.fallback_reason == "cannot load missing/model: no"


def test_cpu_refuses_a_model_it_cannot_hold(monkeypatch, offline):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the memory check applies to CPU runs")
    monkeypatch.setattr(logic.loading, "_memory_bytes", lambda: 16 * 2**30)
    with pytest.raises(logic.ModelUnavailable, match="GiB"):
        logic.load_model(logic.QWEN2_5_VL_7B)


# --- one request ----------------------------------------------------------------------------


def test_make_config_maps_the_controls():
    config = logic.make_config("stc", 2, tau=0.6, cluster_ratio=0.2, knn_k=5, inner_layer=3, inner_keep=0.4,
                               text_weight=0.3)
    assert config == STCConfig(retention=0.02, method="stc", tau=0.6, cluster_ratio=0.2, knn_k=5, inner_layer=3,
                               inner_keep=0.4, text_weight=0.3)
    assert logic.make_config("stc", 5, inner_layer=None).inner_layer is None
    assert logic.make_config("stc", 5, inner_layer=float("nan")).inner_layer is None
    for bad, match in [(dict(retention_percent=0.5), "retention"), (dict(retention_percent=60), "retention"),
                       (dict(method="none"), "unknown method"), (dict(inner_layer=2.5), "whole number"),
                       (dict(tau=0), "tau"), (dict(knn_k=0), "kNN")]:
        kwargs = dict(method="stc", retention_percent=2) | bad
        with pytest.raises(ValueError, match=match) as err:
            logic.make_config(kwargs.pop("method"), kwargs.pop("retention_percent"), **kwargs)
        assert "\n" not in str(err.value)


def test_method_choices_follow_the_registry(monkeypatch):
    assert "stc" in logic.method_choices() and "none" not in logic.method_choices()
    monkeypatch.setattr(logic.requests, "list_methods", lambda: ["none", "stc", "stc-stage1", "fastv"])
    assert logic.method_choices() == ["stc", "stc-stage1", "fastv"]


def test_check_upload_and_controls():
    assert logic.check_upload(str(CLIP), "  Why?  ") == (str(CLIP), "Why?")
    assert logic.check_controls(8, 16) == (8, 16)
    for check, args, match in [(logic.check_upload, (None, "q"), "upload a video"),
                               (logic.check_upload, (str(CLIP), "  "), "question"),
                               (logic.check_controls, (4, 16), "frames"),
                               (logic.check_controls, (8, 0), "max new tokens")]:
        with pytest.raises(ValueError, match=match):
            check(*args)


def test_gpu_budget_grows_with_frames_tokens_and_methods():
    config = STCConfig(retention=0.02)
    small = logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", config, 8, 32)
    assert isinstance(small, int) and 20 <= small
    assert logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", config, 64, 32) > small
    assert logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", config, 8, 512) > small
    assert logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", config, 64, 512) <= logic.GPU_SECONDS_MAX
    # Compare mode: one more generation per method, in the same slot.
    one = logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", (config,), 8, 128)
    five = logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", (config,) * 5, 8, 128)
    assert one == logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", config, 8, 128) < five
    assert logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", (config,) * 8, 64, 512) == logic.GPU_SECONDS_MAX
    # A generation counts at most its time limit.
    assert logic.gpu_seconds(logic.LLAVA_OV_7B, "v.mp4", "q", (config,) * 5, 8, 512, 1.0) < five


def test_check_methods():
    assert logic.check_methods(["fastv", "stc", "fastv"]) == ["stc", "fastv"]  # registry order, once each
    for bad, match in [([], "tick at least one"), (None, "tick at least one"), (["stc", "nope"], "unknown method"),
                       (["none"], "unknown method")]:
        with pytest.raises(ValueError, match=match):
            logic.check_methods(bad)


# --- one comparison -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(app):
    return app.state.pool.get(TINY)


def test_compare_encodes_once_and_returns_picklable_results(tiny):
    tiny.clear_cache()
    steps = []
    result = logic.compare(tiny, CLIP, "What is shown?", STCConfig(retention=0.02), num_frames=FRAMES,
                           max_new_tokens=TOKENS, progress=lambda fraction, desc: steps.append((fraction, desc)))
    b, c = result.baseline.stats, result.compressed.stats
    assert b.visual_tokens_stage1 == FRAMES * 196 and c.visual_tokens_stage1 == round(0.02 * FRAMES * 196)
    assert not b.vision_cached and c.vision_cached  # the vision encoder ran once
    assert isinstance(result.baseline.text, str) and isinstance(result.compressed.text, str)
    assert b.new_tokens >= 1 and c.new_tokens >= 1
    assert result.frames.shape[0] == FRAMES and result.frames.dtype == np.uint8
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    described = " ".join(d for _, d in steps)
    for word in ("decoding", "encoding", "compressing", "baseline: generating", "compressed: generating"):
        assert word in described
    # ZeroGPU moves arguments and results between processes.
    again = pickle.loads(pickle.dumps(result))
    assert again.compressed.stats == c
    rows = logic.cost_rows(result)  # the baseline's row, then the compressed run's
    assert [r[0] for r in rows] == ["baseline", "stc 2%"] and all(len(r) == len(logic.COST_HEADERS) for r in rows)
    assert rows[0][1] == f"{FRAMES * 196:,}" and rows[0][3] == "100.0%"
    assert rows[1][1] == f"{c.visual_tokens_stage1} → {c.visual_tokens_stage2} (K = {c.inner_layer})"
    assert float(rows[1][3][:-1]) < 5 and rows[1][6].endswith(("faster", "slower"))
    assert f"{c.visual_tokens_stage1} / {c.visual_tokens:,} visual tokens" in logic.details(result)
    with pytest.raises(ValueError, match="runs"):
        logic.run_comparison(tiny, CLIP, "q", [STCConfig(retention=0.02)] * 2, num_frames=FRAMES,
                             max_new_tokens=1).compressed  # two runs: no single "compressed" answer


def test_compare_methods_runs_every_method_on_one_encoding(tiny):
    tiny.clear_cache()
    methods = logic.method_choices()
    configs = [STCConfig(retention=0.02, method=m) for m in methods]
    steps = []
    result = logic.run_comparison(tiny, CLIP, "Which way does it turn?", configs, num_frames=FRAMES,
                                   max_new_tokens=TOKENS, progress=lambda f, d: steps.append((f, d)))
    assert [a.config.method for a in result.runs] == methods and result.baseline.config is None
    assert not result.baseline.stats.vision_cached and all(a.stats.vision_cached for a in result.runs)
    budget = round(0.02 * FRAMES * 196)
    for answer in result.runs:
        s = answer.stats
        assert isinstance(answer.text, str) and s.new_tokens >= 1
        if answer.config.method == "fastv":  # retention counts the tokens after layer K
            assert s.visual_tokens_stage1 == FRAMES * 196 and s.visual_tokens_stage2 == budget
        else:
            assert s.visual_tokens_stage1 == budget
        assert answer.provenance.status.shape[0] == FRAMES
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert f"run {len(methods) + 1} of {len(methods) + 1}" in " ".join(d for _, d in steps)
    again = pickle.loads(pickle.dumps(result))  # crosses the ZeroGPU process boundary
    assert [a.stats for a in again.runs] == [a.stats for a in result.runs]

    labels = ["baseline"] + [f"{m} 2%" for m in methods]
    rows = logic.cost_rows(result)
    assert [r[0] for r in rows] == labels and all(len(r) == len(logic.COST_HEADERS) for r in rows)
    assert rows[0][3] == "100.0%" and rows[0][1] == f"{FRAMES * 196:,}"
    stc_row = rows[labels.index("stc 2%")]
    assert stc_row[1].startswith(f"{budget} → ") and stc_row[3].endswith("%") and float(stc_row[3][:-1]) < 5
    assert [r[0] for r in logic.answer_rows(result)] == labels
    text = logic.details(result)
    assert "Which way does it turn?" in text and "earth_rotation.mp4" in text and f"{len(methods)} methods" in text


def test_handler_returns_every_output(app):
    banner, base, comp, grid, table, chart, summary = app.single.run(*run_args())
    assert "meaningless" in banner and base and comp
    assert single_tab.compressed_label("stc", 2.0).label == "compressed — stc 2%"
    assert grid.width > 500 and chart.width > 500
    assert table["headers"] == logic.COST_HEADERS and [row[0] for row in table["data"]] == ["baseline", "stc 2%"]
    assert table["data"][1][2].endswith(("T", "G"))  # FLOPs in the paper's convention
    assert "stc 2%" in summary


@pytest.mark.parametrize(
    "args, match",
    [
        (run_args(video=None), "upload a video"),
        (run_args(question=" "), "question"),
        (run_args(video="GARBAGE"), "cannot read video garbage.mp4: not a video file"),
        (run_args(model=logic.TINY_QWEN.replace("qwen", "nope")), "unknown model"),
        (run_args(inner_layer=99), "K must be in"),
        (run_args(retention=0), "retention"),
    ],
)
def test_handler_failures_are_one_line_gradio_errors(app, args, match, tmp_path, monkeypatch):
    import gradio as gr

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # where uploads live
    if args[0] == "GARBAGE":
        args[0] = tmp_path / "garbage.mp4"
        args[0].write_bytes(np.random.default_rng(0).bytes(4096))

    with pytest.raises(gr.Error) as err:
        app.single.run(*args)
    message = str(err.value.message)
    assert match in message and "\n" not in message and "Traceback" not in message
    assert "/tmp/gradio" not in message


def test_compare_handler_returns_every_method(app):
    methods = ["stc", "fastv", "visionzip"]
    args = run_args()
    args[5] = methods
    banner, answers, table, grids, summary = app.compare.run(*args)
    assert "meaningless" in banner
    assert [row[0] for row in answers["data"]] == ["baseline", "stc 2%", "fastv 2%", "visionzip 2%"]
    assert all(row[1] for row in answers["data"])
    assert table["headers"] == logic.COST_HEADERS and len(table["data"]) == 4
    # One block per method, stacked: three grids of the same 8 frames.
    single = app.single.run(*run_args())[3]
    assert grids.width == single.width and grids.height == 3 * single.height + 2 * 14
    assert "What is shown?" in summary and "top to bottom: stc 2%, fastv 2%, visionzip 2%." in summary
    args[5] = []
    with pytest.raises(Exception, match="tick at least one method"):
        app.compare.run(*args)


def test_retention_grids_stack_one_block_per_method():
    from stc import viz
    from stc.results import Provenance

    frames = np.full((4, 48, 64, 3), 128, np.uint8)

    def provenance(kept: int):
        status = np.zeros((4, 3, 4), np.int8)
        status.reshape(-1)[:kept] = 1
        slot = np.where(status > 0, np.arange(48).reshape(4, 3, 4), -1)
        return Provenance(status, np.full_like(slot, -1), slot, 1, np.arange(4.0), (status > 0).sum(axis=(1, 2)))

    blocks = [viz.retention_grid(frames, provenance(k), title=f"run {k}") for k in (1, 5, 9)]
    stacked = viz.retention_grids(frames, [provenance(k) for k in (1, 5, 9)], titles=["run 1", "run 5", "run 9"])
    assert stacked.width == blocks[0].width and stacked.height == sum(b.height for b in blocks) + 2 * 14
    top = np.asarray(stacked)[: blocks[0].height]
    assert np.array_equal(top, np.asarray(blocks[0]))  # the first block is the first run's grid
    with pytest.raises(ValueError, match="one title per provenance"):
        viz.retention_grids(frames, [provenance(1)], titles=[])


def test_knobs_follow_the_method(app):
    states = dict(zip(logic.KNOBS, single_tab.knob_states("stc-stage1")))
    assert states["tau"]["interactive"] and not states["inner_layer"]["interactive"]
    assert all(s["interactive"] for s in single_tab.knob_states("stc"))


# --- the app, served ---------------------------------------------------------------------------


@contextmanager
def serving(app):
    """Build the app and serve it on a free loopback port; yields its URL."""
    demo = app.build()
    port = free_port()
    app.launch(demo, server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def served(app):
    with serving(app) as url:
        yield url


def test_client_runs_a_real_clip_end_to_end(served):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    client = Client(served, verbose=False)
    args = run_args()
    args[0] = handle_file(str(CLIP))
    banner, base, comp, grid, table, chart, summary = client.predict(*args, api_name="/run")
    assert "tiny-random/llava-onevision" in banner and "meaningless" in banner
    assert isinstance(base, str) and base and isinstance(comp, str) and comp
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.width > 500
    with Image.open(chart) as image:
        assert image.format == "PNG"
    rows = {row[0]: row for row in table["data"]}
    assert rows["baseline"][1] == f"{FRAMES * 196:,}"
    assert rows["stc 2%"][1].startswith(f"{round(0.02 * FRAMES * 196)} → ")
    assert "encoded once" in summary  # the video was encoded once, for both runs

    # A bad request is one line in the UI, and the app keeps serving.
    bad = run_args()
    bad[0] = handle_file(str(ROOT / "README.md"))
    with pytest.raises(AppError) as err:
        client.predict(*bad, api_name="/run")
    assert "cannot read video README.md" in str(err.value) and "Traceback" not in str(err.value)
    again = client.predict(*args, api_name="/run")
    assert again[1] and again[2]


def test_client_compares_every_method_on_a_real_clip(served):
    from gradio_client import Client, handle_file
    from PIL import Image

    client = Client(served, verbose=False)
    methods = logic.method_choices()
    args = run_args(question="Which way does the Earth turn?")
    args[0], args[5] = handle_file(str(CLIP)), methods
    banner, answers, table, grids, summary = client.predict(*args, api_name="/compare")
    labels = ["baseline"] + [f"{m} 2%" for m in methods]
    assert "meaningless" in banner
    assert [row[0] for row in answers["data"]] == labels and all(row[1] for row in answers["data"])
    assert table["headers"] == logic.COST_HEADERS and [row[0] for row in table["data"]] == labels
    assert table["data"][0][1] == f"{FRAMES * 196:,}"
    with Image.open(grids) as image:  # one block per method, one tile row each at 8 frames
        assert image.format == "PNG" and image.width > 500 and image.height > len(methods) * 150
    assert "Which way does the Earth turn?" in summary and "earth_rotation.mp4" in summary
    assert "top to bottom: " + ", ".join(labels[1:]) + "." in summary

