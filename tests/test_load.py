"""stc.load and the app's model picking: unknown ids and unsupported model types get one clear
line, and remote code is never trusted, by the library or by the app. Offline."""

import json
import re
from pathlib import Path

import pytest

import stc
from stc import demo as logic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the hub is not even tried
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.fixture
def bert_checkpoint(tmp_path):
    """A local checkpoint of a type transformers knows and stc does not support."""
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2,
                                                    "num_hidden_layers": 1, "intermediate_size": 8,
                                                    "vocab_size": 10}))
    return folder


@pytest.fixture
def remote_code_checkpoint(tmp_path):
    """A checkpoint that only loads by running its own Python, which would leave a marker."""
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "remote-code-ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil_video_llm", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}))
    (folder / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil_video_llm'\n"
    )
    return folder, marker


SUPPORTED = "supported types: llava_onevision, qwen2_5_vl, qwen2_vl, qwen3_5, qwen3_5_moe, qwen3_vl, qwen3_vl_moe"


def test_unsupported_model_type_names_the_supported_ones(bert_checkpoint):
    with pytest.raises(NotImplementedError) as err:
        stc.load(str(bert_checkpoint))
    assert str(err.value) == f"model_type 'bert' is not supported by stc; {SUPPORTED}"


def test_remote_code_is_never_run(remote_code_checkpoint):
    folder, marker = remote_code_checkpoint
    with pytest.raises(NotImplementedError, match=re.escape(f"model_type 'evil_video_llm' is not supported by stc; {SUPPORTED}")):
        stc.load(str(folder))
    assert not marker.exists()


def test_load_asks_transformers_never_to_trust_remote_code(offline, monkeypatch):
    import transformers

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs)
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    with pytest.raises(ValueError):
        stc.load("someone/some-video-llm")
    assert seen and all(kw.get("trust_remote_code") is False for kw in seen)


def test_no_code_path_enables_remote_code():
    sources = [ROOT / "app.py", *sorted((ROOT / "stc").rglob("*.py"))]
    for source in sources:
        text = source.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*(True|1|[a-z_]+\))", text), source


@pytest.mark.parametrize("model_id, match", [
    ("tiny-random/nope", "unknown tiny model 'tiny-random/nope'; available: tiny-random/llava-onevision"),
    ("someone/not-a-model", "cannot load model 'someone/not-a-model': not a local checkpoint and not reachable on the hub"),
    ("", "model id must be a non-empty string"),
])
def test_unknown_ids_are_one_line_value_errors(offline, model_id, match):
    with pytest.raises(ValueError, match=re.escape(match)) as err:
        stc.load(model_id)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_the_app_reports_unsupported_and_unknown_models_in_one_line(offline, bert_checkpoint, remote_code_checkpoint):
    folder, marker = remote_code_checkpoint
    for model_id, match in [(str(bert_checkpoint), "model_type 'bert' is not supported"),
                            (str(folder), "model_type 'evil_video_llm' is not supported"),
                            ("someone/not-a-model", "the Hugging Face hub cannot be reached")]:
        with pytest.raises(logic.ModelUnavailable, match=re.escape(match)) as err:
            logic.load_model(model_id)
        assert "\n" not in str(err.value)
    assert not marker.exists()
    # The operator's --model pointing at an unsupported checkpoint: the app still starts.
    loaded = logic.ModelPool().load_default(str(bert_checkpoint))
    assert loaded.llm.model_id == logic.FALLBACK_MODEL and "model_type 'bert' is not supported" in loaded.fallback_reason
    assert "model_type 'bert' is not supported" in logic.banner(loaded.llm, fallback_reason=loaded.fallback_reason)


def test_a_visitor_can_only_pick_an_offered_model():
    offered = [logic.TINY_LLAVA, logic.LLAVA_OV_05B]
    assert logic.check_model(f" {logic.TINY_LLAVA} ", offered) == logic.TINY_LLAVA
    for bad in ["/etc", "someone/not-a-model", "", None, 3]:
        with pytest.raises(ValueError, match="unknown model .*; pick one of: tiny-random/llava-onevision, "):
            logic.check_model(bad, offered)
