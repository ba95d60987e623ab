"""stc.models.processors: the checkpoint's own processor first, the pure-torch stand-in otherwise.

The equivalence tests need torchvision (skipped without it): they run in the simulated Space
build (tools/space_build.py, torchvision of the Space's torch) and in the GPU check.
"""

import logging

import numpy as np
import pytest
import torch
import transformers
from transformers.processing_utils import ProcessorMixin

import stc
from stc.models import processors
from stc.models.processors import (
    TorchLlavaOnevisionVideoProcessor,
    TorchQwen2VLVideoProcessor,
    TorchQwen3VLVideoProcessor,
    accepting_stand_ins,
    load_processor,
)
from stc.models.tiny import TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL, TINY_QWEN3_VL, tiny_processor
from stc.video import load_video

needs_torchvision = pytest.mark.skipif(not processors.torchvision_works(), reason="torchvision does not import here")
FAMILIES = {
    TINY_LLAVA_ONEVISION: ("LlavaOnevisionProcessor", "llava_onevision", TorchLlavaOnevisionVideoProcessor),
    TINY_QWEN2_5_VL: ("Qwen2_5_VLProcessor", "qwen2_vl", TorchQwen2VLVideoProcessor),
    TINY_QWEN3_VL: ("Qwen3VLProcessor", "qwen3_vl", TorchQwen3VLVideoProcessor),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A saved processor per family, as `save_pretrained` writes a checkpoint's processor."""
    out = {}
    for name in FAMILIES:
        folder = tmp_path_factory.mktemp(name.split("/")[1])
        tiny_processor(name).save_pretrained(folder)
        out[name] = str(folder)
    return out


@pytest.fixture(scope="module", params=["b.mp4", "a.mp4"])
def frames(request, gradio_clip):
    """Real frames: 480x270 and 1920x1080 (scaled to 1344 px by load_video), 8 of each."""
    return load_video(gradio_clip(request.param), 8).frames


def _stand_in(name: str, source: str):
    processor_class, kind, _ = FAMILIES[name]
    return accepting_stand_ins(getattr(transformers, processor_class), kind).from_pretrained(source)


# ---- with torchvision: the stand-in against the real thing ---------------------------------


@needs_torchvision
@pytest.mark.parametrize("name", FAMILIES)
def test_load_processor_is_the_checkpoints_own_where_torchvision_works(name, checkpoints):
    processor_class, kind, stand_in_cls = FAMILIES[name]
    processor = load_processor(checkpoints[name], processor_class=processor_class, video_kind=kind)
    assert type(processor) is getattr(transformers, processor_class)
    assert not isinstance(processor.video_processor, stand_in_cls)
    assert type(processor.video_processor).__name__ == stand_in_cls.stands_in_for


@needs_torchvision
@pytest.mark.parametrize("name", FAMILIES)
def test_stand_in_matches_the_real_processor_on_real_clips(name, checkpoints, frames):
    real = transformers.AutoProcessor.from_pretrained(checkpoints[name])
    ours = _stand_in(name, checkpoints[name])
    assert isinstance(ours.video_processor, FAMILIES[name][2])
    kwargs = dict(videos=[frames], return_tensors="pt", do_sample_frames=False)
    want, got = real.video_processor(**kwargs), ours.video_processor(**kwargs)
    assert set(got) == set(want)
    if "video_grid_thw" in want:
        assert torch.equal(got["video_grid_thw"], want["video_grid_thw"])
    a, b = got["pixel_values_videos"], want["pixel_values_videos"]
    assert a.shape == b.shape and a.dtype == b.dtype
    # The same torch kernels on the same uint8 frames: equal up to float rounding in normalising.
    assert torch.allclose(a, b, rtol=0, atol=1e-5), (a - b).abs().max()
    # The whole processor: the same placeholder expansion of the same prompt.
    text = real.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}],
        add_generation_prompt=True,
    )
    ids_real = real(text=text, videos=[frames], return_tensors="pt", do_sample_frames=False)["input_ids"]
    ids_ours = ours(text=text, videos=[frames], return_tensors="pt", do_sample_frames=False)["input_ids"]
    assert torch.equal(ids_real, ids_ours)


# ---- everywhere -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_stand_in_processor_keeps_the_checkpoints_settings(name, checkpoints):
    saved = tiny_processor(name)
    loaded = _stand_in(name, checkpoints[name])
    assert type(loaded).__name__ == type(saved).__name__
    assert isinstance(loaded, getattr(transformers, FAMILIES[name][0]))
    assert isinstance(loaded.video_processor, FAMILIES[name][2])
    vp, ref = loaded.video_processor, saved.video_processor
    assert list(vp.image_mean) == list(ref.image_mean) and list(vp.image_std) == list(ref.image_std)
    assert dict(vp.size) == dict(ref.size)
    assert loaded.chat_template == saved.chat_template
    assert loaded.tokenizer.get_vocab() == saved.tokenizer.get_vocab()
    frames = np.random.default_rng(0).integers(0, 256, (4, 90, 160, 3), dtype=np.uint8)
    text = saved.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}], add_generation_prompt=True
    )
    if not processors.torchvision_works():  # both are stand-ins here: identical outputs
        a = saved(text=text, videos=[frames], return_tensors="pt", do_sample_frames=False)
        b = loaded(text=text, videos=[frames], return_tensors="pt", do_sample_frames=False)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(processors.torchvision_works(), reason="the fallback is for machines without torchvision")
def test_without_torchvision_the_fallback_warns_once_and_patches_nothing(checkpoints, caplog):
    original = ProcessorMixin.check_argument_for_proper_class
    processors._warned.clear()
    with caplog.at_level(logging.WARNING, logger="stc.models.processors"):
        for _ in range(2):
            processor = load_processor(
                checkpoints[TINY_LLAVA_ONEVISION], processor_class="LlavaOnevisionProcessor", video_kind="llava_onevision"
            )
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "LlavaOnevisionVideoProcessor" in warnings[0] and "TorchLlavaOnevisionVideoProcessor" in warnings[0]
    assert isinstance(processor.video_processor, TorchLlavaOnevisionVideoProcessor)
    # transformers' own classes are untouched: they still refuse the stand-in (their check
    # looks up a class that transformers does not export without torchvision).
    assert ProcessorMixin.check_argument_for_proper_class is original
    assert transformers.LlavaOnevisionProcessor.check_argument_for_proper_class is original
    with pytest.raises((TypeError, AttributeError)):
        transformers.LlavaOnevisionProcessor(
            image_processor=processor.image_processor, tokenizer=processor.tokenizer,
            video_processor=processor.video_processor,
        )


def test_accepting_stand_ins_is_one_subclass_per_class():
    a = accepting_stand_ins(transformers.Qwen2_5_VLProcessor, "qwen2_vl")
    assert a is accepting_stand_ins(transformers.Qwen2_5_VLProcessor, "qwen2_vl")
    assert issubclass(a, transformers.Qwen2_5_VLProcessor) and a is not transformers.Qwen2_5_VLProcessor
    assert a.__name__ == "Qwen2_5_VLProcessor"  # what save_pretrained records as processor_class
    with pytest.raises(ValueError, match="unknown video processor kind"):
        processors.video_processor("clip")


def test_a_saved_checkpoint_loads_and_answers_as_the_original(tmp_path, llm, video):
    """`stc.load` on a folder written by save_pretrained: the checkpoint's own files, the same
    answers as the model it was saved from."""
    llm.model.save_pretrained(tmp_path)
    llm.processor.save_pretrained(tmp_path)
    # on the original's device and dtype (on a GPU the fixture is bf16 on CUDA: a copy in fp32 on
    # the CPU would answer differently for that reason alone; seen in the GPU check, 2026-12-04)
    loaded = stc.load(str(tmp_path), device=llm.device, dtype=llm.dtype)
    assert type(loaded.adapter) is type(llm.adapter) and loaded.model_id == str(tmp_path)
    config = stc.STCConfig(retention=0.05)
    a = llm.answer(video, "What is shown?", config=config, max_new_tokens=4)
    b = loaded.answer(video, "What is shown?", config=config, max_new_tokens=4)
    assert a.text == b.text and a.stats.visual_tokens_stage1 == b.stats.visual_tokens_stage1
    assert np.array_equal(a.provenance.status, b.provenance.status)


def test_a_checkpoint_that_samples_frames_itself_still_gets_stcs_frames(tmp_path, llm, video):
    """Newer checkpoints turn the video processor's own frame sampling on; stc samples the
    frames (load_video) and the adapter must not let the processor sample them again."""
    import json

    llm.model.save_pretrained(tmp_path)
    llm.processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    config = json.loads(path.read_text())
    config["video_processor"]["do_sample_frames"] = True
    path.write_text(json.dumps(config))
    loaded = stc.load(str(tmp_path), device="cpu")
    assert loaded.processor.video_processor.do_sample_frames
    answer = loaded.answer(video, "What is shown?", max_new_tokens=2)
    assert answer.stats.visual_tokens == video.num_frames * 196


@pytest.mark.parametrize("name", FAMILIES)
def test_a_checkpoint_saved_with_the_stand_in_names_the_real_class(name, tmp_path):
    """A folder saved where torchvision does not import must load where it does: it records
    transformers' video processor, not stc's stand-in."""
    import json

    processor_class, kind, stand_in_cls = FAMILIES[name]
    stand_in = stand_in_cls()
    saved = accepting_stand_ins(getattr(transformers, processor_class), kind)(
        image_processor=processors.image_processor(kind), tokenizer=tiny_processor(name).tokenizer,
        video_processor=stand_in)
    saved.save_pretrained(tmp_path)
    recorded = json.loads((tmp_path / "processor_config.json").read_text())["video_processor"]
    real = {"llava_onevision": "LlavaOnevisionVideoProcessor", "qwen2_vl": "Qwen2VLVideoProcessor",
            "qwen3_vl": "Qwen3VLVideoProcessor"}[kind]
    assert recorded["video_processor_type"] == real


def test_a_checkpoint_in_the_hubs_older_file_layout_loads_and_answers_the_same(tmp_path, llm, video):
    """llava-hf's checkpoints keep their processor in separate files (preprocessor_config.json,
    video_preprocessor_config.json, a processor_config.json without the parts, chat_template.json):
    the path a real checkpoint takes reads those, with or without torchvision."""
    import json

    llm.model.save_pretrained(tmp_path)
    llm.processor.save_pretrained(tmp_path)
    combined = json.loads((tmp_path / "processor_config.json").read_text())
    image, video_cfg = combined.pop("image_processor"), combined.pop("video_processor")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**image, "processor_class": combined["processor_class"]}))
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(video_cfg))
    (tmp_path / "processor_config.json").write_text(json.dumps(combined))
    template = (tmp_path / "chat_template.jinja").read_text()
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))

    loaded = stc.load(str(tmp_path), device=llm.device, dtype=llm.dtype)  # as above
    assert loaded.processor.chat_template == llm.processor.chat_template
    assert list(loaded.processor.video_processor.image_mean) == list(llm.processor.video_processor.image_mean)
    config = stc.STCConfig(retention=0.05)
    a = llm.answer(video, "What is shown?", config=config, max_new_tokens=4)
    b = loaded.answer(video, "What is shown?", config=config, max_new_tokens=4)
    assert a.text == b.text and np.array_equal(a.provenance.status, b.provenance.status)
