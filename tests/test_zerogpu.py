"""ZeroGPU as a Space visitor meets it: what a click asks for, and which models a page offers."""

import pytest

from stc import STCConfig
from stc import demo as logic

SPACE_MODELS = [logic.LLAVA_OV_7B, logic.QWEN3_VL_2B, logic.TOY_LLAVA, logic.TINY_LLAVA, logic.TINY_QWEN,
                logic.TINY_QWEN3_VL, logic.TINY_QWEN3_5]


def _default_run(model_id: str) -> int:
    config = STCConfig(retention=logic.RETENTION_PERCENT[2] / 100)
    return logic.gpu_seconds(model_id, "v.mp4", "q", config, logic.FRAMES[2], logic.MAX_NEW_TOKENS[2])


def _default_compare(model_id: str) -> int:
    configs = tuple(STCConfig(method=m, retention=logic.RETENTION_PERCENT[2] / 100) for m in logic.COMPARE_DEFAULT)
    return logic.gpu_seconds(model_id, "v.mp4", "q", configs, logic.FRAMES[2], logic.MAX_NEW_TOKENS[2])


@pytest.mark.parametrize("model_id", SPACE_MODELS)
def test_a_default_run_and_a_default_compare_each_fit_an_anonymous_quota(model_id):
    run, compare = _default_run(model_id), _default_compare(model_id)
    assert 0 < run < compare <= logic.ANONYMOUS_GPU_SECONDS
    # The page says so before the click, and warns when a click would not fit.
    assert "sign in" not in logic.quota_note(compare) and f"{compare} s" in logic.quota_note(compare)
    biggest = logic.gpu_seconds(model_id, "v", "q", (STCConfig(retention=0.02),) * len(logic.method_choices()), logic.FRAMES[1],
                                logic.MAX_NEW_TOKENS[1])
    if biggest > logic.ANONYMOUS_GPU_SECONDS:
        assert "sign in" in logic.quota_note(biggest)
    assert biggest <= logic.GPU_SECONDS_MAX


def test_on_zero_gpu_only_models_loaded_at_start_and_the_tiny_ones_are_offered():
    on_space = [mid for _, mid in logic.model_choices(logic.LLAVA_OV_7B, *logic.SPACE_ALSO_LOAD, zero_gpu=True)]
    assert on_space == SPACE_MODELS
    # Off ZeroGPU every known model is offered (loaded on first use), extras first.
    local = [mid for _, mid in logic.model_choices("me/my-ckpt", logic.LLAVA_OV_05B, zero_gpu=False)]
    assert local[0] == "me/my-ckpt" and set(logic.MODELS) <= set(local) and len(local) == len(set(local))


def test_every_model_the_space_offers_needs_no_download_in_a_request(tmp_path):
    """The Space's default model and the ones it also loads at start are in preload_from_hub
    (downloaded at build time); the others it offers are the offline models (the committed toy,
    the tiny random ones)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("---")[1]
    preload = [line.strip()[2:] for line in text.split("preload_from_hub:")[1].splitlines()[1:]
               if line.startswith("  - ")]
    assert logic.LLAVA_OV_7B in preload and set(logic.SPACE_ALSO_LOAD) <= set(preload)
    for _, mid in logic.model_choices(logic.LLAVA_OV_7B, *logic.SPACE_ALSO_LOAD, zero_gpu=True):
        assert mid in preload or mid in logic.OFFLINE_MODELS
    assert "suggested_hardware: zero-" in text


def test_a_space_loads_qwen3_vl_at_start_keeps_it_and_offers_it(monkeypatch):
    """On a Space the models of `SPACE_ALSO_LOAD` are loaded at start beside the default (so
    ZeroGPU packs them), never dropped from the pool, and offered; one that fails to load is
    left out without stopping the app; ``--also-load`` / STC_ALSO_LOAD override the list."""
    from types import SimpleNamespace

    monkeypatch.delenv("STC_ALSO_LOAD", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert logic.also_load_ids() == []
    monkeypatch.setenv("SPACE_ID", "someone/stc")
    assert logic.also_load_ids() == [logic.QWEN3_VL_2B]
    monkeypatch.setenv("STC_ALSO_LOAD", " a/b , c/d ,")
    assert logic.also_load_ids() == ["a/b", "c/d"] and logic.also_load_ids("") == []

    def loader(model_id, device):
        if model_id == "broken/model":
            raise logic.ModelUnavailable("cannot load broken/model: no")
        return SimpleNamespace(model_id=model_id)

    pool = logic.ModelPool(capacity=1, loader=loader)
    pool.load_default(logic.LLAVA_OV_7B)
    assert pool.load_also([logic.QWEN3_VL_2B, "broken/model"]) == [logic.QWEN3_VL_2B]
    capacity = pool.capacity
    assert pool.load_also([logic.QWEN3_VL_2B]) == [logic.QWEN3_VL_2B]  # an app built twice on one pool
    assert pool.pinned == [logic.QWEN3_VL_2B] and pool.capacity == capacity
    for pick in (logic.TINY_LLAVA, logic.TINY_QWEN, logic.TINY_QWEN3_VL):
        pool.get(pick)
    assert pool.loaded[:2] == [logic.LLAVA_OV_7B, logic.QWEN3_VL_2B] and pool.loaded[-1] == logic.TINY_QWEN3_VL
    offered = [mid for _, mid in logic.model_choices(logic.LLAVA_OV_7B, logic.QWEN3_VL_2B, zero_gpu=True)]
    assert logic.QWEN3_VL_2B in offered and "broken/model" not in offered
