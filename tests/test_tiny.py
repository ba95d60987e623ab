"""stc.models.tiny: offline tiny models of the real architectures, their processors, generate."""

import time

import numpy as np
import pytest
import torch

from stc.models.processors import TorchQwen2VLVideoProcessor
from stc.models.tiny import (
    TINY_IDS,
    TINY_LLAVA_ONEVISION,
    TINY_QWEN2_5_VL,
    TINY_QWEN3_5,
    TINY_QWEN3_5_MOE,
    TINY_QWEN3_VL,
    TINY_QWEN3_VL_MOE,
    build_tiny,
    tiny_config,
    tiny_tokenizer,
)
from stc.video import load_video

QUESTION = "What is happening in this video?"


@pytest.fixture(scope="module")
def clip(gradio_clip):
    return load_video(gradio_clip("b.mp4"), 8)  # 480x270, 8 frames


@pytest.fixture(scope="module")
def tiny(request):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build_tiny(name)
        return cache[name]

    return get


def _prompt(processor):
    conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


@pytest.mark.parametrize("name", TINY_IDS)
def test_builds_offline_and_fast(name):
    start = time.perf_counter()
    model, processor = build_tiny(name)
    assert time.perf_counter() - start < 10
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert next(model.parameters()).dtype == torch.float32
    assert build_tiny(name, dtype=torch.bfloat16)[0].dtype == torch.bfloat16


@pytest.mark.parametrize("name", TINY_IDS)
def test_same_seed_same_weights(name):
    rng_before = torch.get_rng_state()
    first = build_tiny(name, seed=3)[0].state_dict()
    second = build_tiny(name, seed=3)[0].state_dict()
    other = build_tiny(name, seed=4)[0].state_dict()
    assert torch.equal(rng_before, torch.get_rng_state()), "building must not touch the global RNG"
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_unknown_name():
    with pytest.raises(ValueError, match="tiny-random/llava-onevision"):
        build_tiny("tiny-random/llama")


@pytest.mark.parametrize(
    "name, tokens",
    [
        (TINY_LLAVA_ONEVISION, {"video_token_id": "<video>", "image_token_id": "<image>"}),
        *[(name, {"video_token_id": "<|video_pad|>", "image_token_id": "<|image_pad|>",
                  "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"})
          for name in (TINY_QWEN2_5_VL, TINY_QWEN3_VL, TINY_QWEN3_VL_MOE, TINY_QWEN3_5, TINY_QWEN3_5_MOE)],
    ],
)
def test_config_and_tokenizer_agree(name, tokens):
    config, tokenizer = tiny_config(name), tiny_tokenizer(name)
    assert config.get_text_config().vocab_size == len(tokenizer)
    for attr, token in tokens.items():
        assert getattr(config, attr) == tokenizer.convert_tokens_to_ids(token)
    assert config.get_text_config().eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(
        "<|im_end|>"
    )
    assert tokenizer.pad_token == "<|endoftext|>"
    text = "Describe the red car, then count: 1 2 3. Ünïcödé ok?"
    assert tokenizer.decode(tokenizer(text).input_ids) == text  # byte-level: lossless


def test_real_geometry():
    ov = tiny_config(TINY_LLAVA_ONEVISION)
    assert (ov.vision_config.image_size, ov.vision_config.patch_size) == (384, 14)
    assert (ov.vision_feature_layer, ov.vision_feature_select_strategy) == (-1, "full")
    qwen = tiny_config(TINY_QWEN2_5_VL)
    vision = qwen.vision_config
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size, vision.window_size) == (
        14, 2, 2, 112)
    assert vision.fullatt_block_indexes == [1, 3] and vision.depth == 4
    text = qwen.get_text_config()
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2


@pytest.mark.parametrize("name", [TINY_QWEN3_VL, TINY_QWEN3_VL_MOE])
def test_qwen3_vl_real_geometry(name):
    config = tiny_config(name)
    vision, text = config.vision_config, config.get_text_config()
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (16, 2, 2)
    assert vision.num_position_embeddings == 2304 and len(vision.deepstack_visual_indexes) == 3
    assert max(vision.deepstack_visual_indexes) < vision.depth - 1  # the last block is not a tap
    assert text.rope_parameters["mrope_interleaved"] and sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    if name == TINY_QWEN3_VL_MOE:
        assert (text.num_experts, text.num_experts_per_tok) == (4, 2)


@pytest.mark.parametrize("name", [TINY_QWEN3_5, TINY_QWEN3_5_MOE])
def test_qwen3_5_real_geometry(name):
    config = tiny_config(name)
    vision, text = config.vision_config, config.get_text_config()
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size) == (16, 2, 2)
    assert not hasattr(vision, "deepstack_visual_indexes")  # Qwen3.5's tower has no DeepStack
    # the real pattern: full attention in every 4th layer (full_attention_interval 4)
    assert text.layer_types == ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(8)]
    rope = text.rope_parameters
    assert rope["partial_rotary_factor"] == 0.25 and rope["mrope_interleaved"]
    assert sum(rope["mrope_section"]) == int(text.head_dim * 0.25) // 2
    assert text.linear_num_value_heads == 2 * text.linear_num_key_heads and text.linear_conv_kernel_dim == 4
    if name == TINY_QWEN3_5_MOE:
        assert (text.num_experts, text.num_experts_per_tok, text.shared_expert_intermediate_size) == (4, 2, 32)


@pytest.mark.parametrize("name", [TINY_QWEN3_VL, TINY_QWEN3_VL_MOE, TINY_QWEN3_5, TINY_QWEN3_5_MOE])
def test_qwen3_vl_processor_and_generate(tiny, clip, name):
    model, processor = tiny(name)
    think = "<think>\n\n</think>\n\n" if name in (TINY_QWEN3_5, TINY_QWEN3_5_MOE) else ""  # closed by default
    assert _prompt(processor) == (
        f"<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        + think
    )
    inputs = processor(text=_prompt(processor), videos=[clip.frames], video_metadata=[clip.to_video_metadata()],
                       do_sample_frames=False, return_tensors="pt")
    # 8 x 270x480 is over the whole video's pixel budget (32*32*768): 224x416, grid (8/2, 224/16, 416/16)
    assert inputs["video_grid_thw"].tolist() == [[4, 14, 26]]
    assert tuple(inputs["pixel_values_videos"].shape) == (4 * 14 * 26, 3 * 2 * 16 * 16)
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 4 * 14 * 26 // 4
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.count(" seconds><|vision_start|>") == 4  # one timestamp per temporal patch
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_chat_templates_match_the_checkpoints(tiny):
    _, ov = tiny(TINY_LLAVA_ONEVISION)
    assert _prompt(ov) == f"<|im_start|>user\n<video>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    _, qwen = tiny(TINY_QWEN2_5_VL)
    assert _prompt(qwen) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_llava_onevision_processor_and_generate(tiny, clip):
    model, processor = tiny(TINY_LLAVA_ONEVISION)
    inputs = processor(text=_prompt(processor), videos=[clip.frames], return_tensors="pt")
    assert tuple(inputs["pixel_values_videos"].shape) == (1, 8, 3, 384, 384)
    placeholders = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert placeholders == 8 * 196 + 1 == 1569
    with torch.no_grad():
        features = model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"]).pooler_output
        assert tuple(features.shape) == (1, placeholders, 64)
        out = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_qwen2_5_vl_processor_and_generate(tiny, clip):
    model, processor = tiny(TINY_QWEN2_5_VL)
    inputs = processor(
        text=_prompt(processor), videos=[clip.frames], video_metadata=[clip.to_video_metadata()], return_tensors="pt"
    )
    # 270x480 -> 280x476 (multiples of 28): grid (8/2, 280/14, 476/14) = (4, 20, 34).
    assert inputs["video_grid_thw"].tolist() == [[4, 20, 34]]
    assert tuple(inputs["pixel_values_videos"].shape) == (4 * 20 * 34, 3 * 2 * 14 * 14)
    placeholders = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert placeholders == 4 * 20 * 34 // 4 == 680
    # Two frames per temporal patch at the clip's real sampling rate (8 of 150 frames at 30 fps).
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / (8 / 150 * 30)])
    with torch.no_grad():
        features = model.get_video_features(
            pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"]
        ).pooler_output
        assert sum(f.shape[0] for f in features) == placeholders
        out = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_torch_qwen_video_patches_match_the_image_processor(clip):
    # Qwen2-VL's image processor treats an image as a temporal patch of two identical frames,
    # so a two-frame video of one frame must give the same patch layout and values (up to
    # resize rounding: PIL's bicubic vs torch's).
    from transformers import Qwen2VLImageProcessorPil

    frame = clip.frames[0]
    image = Qwen2VLImageProcessorPil()(images=[frame], return_tensors="pt")
    video = TorchQwen2VLVideoProcessor()(videos=[np.stack([frame, frame])], return_tensors="pt")
    assert video["video_grid_thw"].tolist() == image["image_grid_thw"].tolist()
    assert video["pixel_values_videos"].shape == image["pixel_values"].shape
    difference = (video["pixel_values_videos"] - image["pixel_values"]).abs()
    assert difference.mean() < 0.02 and difference.max() < 0.5
