"""The library as a Hugging Face user reaches it: stc.load's hub arguments, stc.wrap on a model
loaded by hand, the supported transformers range."""

import shutil
import sys

import numpy as np
import pytest
import torch
import transformers

import stc
from stc.models import TRANSFORMERS_RANGE
from stc.models.tiny import TINY_LLAVA_ONEVISION, build_tiny

QUESTION = "What is shown?"
CONFIG = stc.STCConfig(retention=0.05)
SHA = "1" * 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny LLaVA-OneVision written by save_pretrained: (folder, the model it came from)."""
    folder = tmp_path_factory.mktemp("ckpt")
    model, processor = build_tiny(TINY_LLAVA_ONEVISION)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, stc.wrap(model, processor, model_id="original")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, checkpoint):
    """A hub cache folder holding the checkpoint as org/tiny-ov at revision SHA (refs/main too)."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--org--tiny-ov"
    shutil.copytree(checkpoint[0], repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return cache


def _same_answers(a, b, video):
    x = a.answer(video, QUESTION, config=CONFIG, max_new_tokens=4)
    y = b.answer(video, QUESTION, config=CONFIG, max_new_tokens=4)
    assert x.text == y.text and x.stats.visual_tokens_stage1 == y.stats.visual_tokens_stage1
    assert np.array_equal(x.provenance.status, y.provenance.status)


def test_load_passes_cache_dir_revision_and_local_files_only_everywhere(hub_cache, checkpoint, video):
    llm = stc.load("org/tiny-ov", cache_dir=hub_cache, revision=SHA, local_files_only=True, device="cpu")
    assert llm.model_id == "org/tiny-ov"
    _same_answers(llm, checkpoint[1], video)
    # Each argument really reaches from_pretrained: a revision the cache lacks is refused.
    with pytest.raises(ValueError, match="cannot load model 'org/tiny-ov'"):
        stc.load("org/tiny-ov", cache_dir=hub_cache, revision="2" * 40, local_files_only=True)
    with pytest.raises(ValueError, match="cannot load model 'org/tiny-ov'"):
        stc.load("org/tiny-ov", cache_dir=hub_cache / "elsewhere", local_files_only=True)


def test_load_with_a_device_map(checkpoint, video, monkeypatch):
    pytest.importorskip("accelerate")
    cls = transformers.LlavaOnevisionForConditionalGeneration
    real, seen = cls.from_pretrained.__func__, []

    def spy(klass, *args, **kwargs):  # the real loader, recording what it was given
        seen.append(kwargs.get("device_map"))
        return real(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    llm = stc.load(str(checkpoint[0]), device_map={"": "cpu"})
    assert seen == [{"": "cpu"}] and llm.device.type == "cpu"
    _same_answers(llm, checkpoint[1], video)


def test_wrap_a_model_loaded_with_transformers(checkpoint, video):
    folder, original = checkpoint
    model = transformers.LlavaOnevisionForConditionalGeneration.from_pretrained(folder)
    llm = stc.wrap(model)  # the processor comes from the checkpoint the model was loaded from
    assert isinstance(llm, stc.VideoLLM) and llm.model is model and llm.model_id == str(folder)
    _same_answers(llm, original, video)
    # Nothing of stc stays on the model: its own forward is unchanged after compressed calls.
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        llm.answer(video, QUESTION, config=CONFIG, max_new_tokens=2)
        assert torch.equal(model(input_ids=ids).logits, before)


def test_wrap_refuses_what_it_cannot_serve(checkpoint):
    _, original = checkpoint
    with pytest.raises(TypeError, match="LlavaOnevisionForConditionalGeneration"):
        stc.wrap(original.model.model, original.processor)  # the bare model, no LM head
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                                          intermediate_size=8))
    with pytest.raises(NotImplementedError, match="supported types"):
        stc.wrap(bert)
    unnamed = build_tiny(TINY_LLAVA_ONEVISION)[0]
    unnamed.config._name_or_path = ""
    with pytest.raises(ValueError, match="processor"):
        stc.wrap(unnamed)


def test_a_transformers_outside_the_tested_range_is_named(monkeypatch):
    low, high = TRANSFORMERS_RANGE
    module = sys.modules["transformers"]  # transformers' lazy module may have replaced itself there
    monkeypatch.setattr(module, "__version__", high + ".0")
    with pytest.raises(ImportError, match=f">={low},<{high}"):
        stc.load(TINY_LLAVA_ONEVISION)
    monkeypatch.setattr(module, "__version__", "5.0.0")
    with pytest.raises(ImportError, match="found 5.0.0"):
        stc.wrap(object())


def test_the_range_is_the_one_pyproject_pins():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    low, high = TRANSFORMERS_RANGE
    assert f'"transformers>={low},<{high}"' in text
    installed = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    assert tuple(map(int, low.split("."))) <= installed < tuple(map(int, high.split(".")))


def test_the_package_is_typed():
    from importlib.resources import files

    assert files("stc").joinpath("py.typed").is_file()
