"""The lmms-eval model "stc": its generation entry point on constructed requests, offline.

lmms-eval hands `generate_until` Instance objects whose ``.args`` are (context, gen_kwargs,
doc_to_visual, doc_id, task, split) and sets ``model.task_dict[task][split][doc_id]`` to the
docs; these tests build exactly that, with the tiny random LLaVA-OneVision and gradio's clips.
They run with or without lmms-eval installed.
"""

import json
from types import SimpleNamespace

import pytest
from PIL import Image

import stc
from stc.lmms_plugin import STC, _cut_at

ARGS = "pretrained=tiny-random/llava-onevision,method=stc,retention=0.1,max_frames_num=4"
CONTEXT = "What is shown?\nA. a ball\nB. a car\nC. text\nD. a tree\nAnswer with the option's letter from the given choices directly."


def _request(context, doc_id, task="videomme", split="test", **gen_kwargs):
    gen = {"max_new_tokens": 3, "temperature": 0, "do_sample": False, "until": ["\n\n"], **gen_kwargs}
    to_visual = lambda doc: doc["visual"]  # noqa: E731 - what lmms-eval tasks pass
    return SimpleNamespace(args=(context, gen, to_visual, doc_id, task, split))


@pytest.fixture(scope="module")
def model():
    # lmms-eval adds these three from its own --batch_size / --device flags
    return STC.create_from_arg_string(ARGS, {"batch_size": 1, "max_batch_size": None, "device": "cpu"})


def test_generate_until_answers_each_request_like_the_api(model, gradio_clip, tmp_path):
    b, world = str(gradio_clip("b.mp4")), str(gradio_clip("world.mp4"))
    frames = stc.load_video(world, num_frames=6).frames
    model.task_dict = {
        "videomme": {"test": [{"visual": [b]}, {"visual": [world]}]},
        "mvbench_action_antonym": {"train": [{"visual": [Image.fromarray(f) for f in frames]}]},
    }
    requests = [
        _request(CONTEXT, 1),
        _request(CONTEXT, 0),
        _request("Question:What?\nOption:\n(A) x\n(B) y\nOnly give the best option.\n", 0,
                 task="mvbench_action_antonym", split="train"),
    ]
    model.stats_path = tmp_path / "stats.jsonl"
    out = model.generate_until(requests)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)

    # the same answer as stc's own API with the same config, frames and budget
    config = stc.STCConfig(retention=0.1, method="stc")
    direct = model.llm.answer(stc.load_video(world, num_frames=4), CONTEXT, config=config, max_new_tokens=3)
    assert out[0] == _cut_at(direct.text, ["\n\n"])

    stats = [json.loads(line) for line in model.stats_path.read_text().splitlines()]
    assert [(s["task"], s["doc_id"]) for s in stats] == [("videomme", 1), ("videomme", 0), ("mvbench_action_antonym", 0)]
    assert all(s["method"] == "stc" and s["retention"] == 0.1 and s["flops"] < s["flops_baseline"] for s in stats)
    assert stats[0]["visual_tokens_stage1"] == round(0.1 * stats[0]["visual_tokens"])
    # PIL frames: 6 given, 4 sampled, as for a video file
    assert stats[2]["visual_tokens"] == stats[0]["visual_tokens"]
    model.stats_path = None


def test_baseline_and_config_fields():
    base = STC.create_from_arg_string("pretrained=tiny-random/llava-onevision,method=none,max_num_frames=4")
    assert base.config is None and base.num_frames == 4
    tuned = STC.create_from_arg_string(ARGS + ",inner_keep=1,tau=0.8,knn_k=5")
    assert tuned.config == stc.STCConfig(retention=0.1, method="stc", inner_keep=1.0, tau=0.8, knn_k=5)
    with pytest.raises(ValueError, match="unknown model_args"):
        STC.create_from_arg_string(ARGS + ",temprature=0")
    with pytest.raises(ValueError, match="available"):
        STC.create_from_arg_string("pretrained=tiny-random/llava-onevision,method=nope")
    with pytest.raises(ValueError, match="retention"):
        STC.create_from_arg_string("pretrained=tiny-random/llava-onevision,retention=2")


def test_unreadable_video_is_answered_empty_and_reported(model, tmp_path):
    model.task_dict = {"videomme": {"test": [{"visual": [str(tmp_path / "missing.mp4")]}]}}
    model.stats_path = tmp_path / "stats.jsonl"
    with pytest.warns(UserWarning, match="not found"):
        assert model.generate_until([_request(CONTEXT, 0)]) == [""]
    (line,) = model.stats_path.read_text().splitlines()
    assert "not found" in json.loads(line)["error"]
    model.stats_path = None


def test_unsupported_requests_fail_clearly(model):
    model.task_dict = {"t": {"test": [{"visual": []}, {"visual": None}]}}
    for doc_id in (0, 1):
        with pytest.raises(ValueError, match="no visual input"):
            model.generate_until([_request("Q?", doc_id, task="t")])
    with pytest.raises(NotImplementedError):
        model.loglikelihood([])
    with pytest.raises(NotImplementedError):
        model.generate_until_multi_round([])


def test_cut_at_until():
    assert _cut_at("B\n\nbecause", ["\n\n"]) == "B"
    assert _cut_at("B. yes", ".") == "B"
    assert _cut_at("B", None) == _cut_at("B", []) == "B"


def test_registers_with_lmms_eval_when_installed():
    pytest.importorskip("lmms_eval.models.registry_v2")
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    from stc.lmms_plugin import manifests

    registry = ModelRegistryV2()
    for manifest in manifests():
        registry.register_manifest(manifest)
    assert registry.get_model_class("stc") is STC
