"""Configs of the tiny Qwen3-VL and Qwen3.5 models (`stc.models.tiny`): the real checkpoints'
non-size values, tiny widths and depths. ``text`` is tiny.py's common text config (hidden 64,
MLP 128, 4 heads, 2 kv heads, tied embeddings, the offline tokenizer's ids); ``ids`` maps the
offline tokenizer's special tokens to their ids.
"""

from __future__ import annotations

from transformers import Qwen3_5Config, Qwen3_5MoeConfig, Qwen3VLConfig, Qwen3VLMoeConfig


def _common(ids: dict, tie: bool = True) -> dict:
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                tie_word_embeddings=tie)


def _vision(text: dict, **extra) -> dict:
    """The Qwen3-VL / Qwen3.5 ViT: patch 16, temporal patch 2, merge 2, 2304 learned positions,
    gelu_pytorch_tanh; depth 4, hidden 32, 2 heads, MLP 64."""
    return dict(depth=4, hidden_size=32, intermediate_size=64, num_heads=2, hidden_act="gelu_pytorch_tanh",
                in_channels=3, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                num_position_embeddings=2304, out_hidden_size=text["hidden_size"], **extra)


def qwen3_vl_config(text: dict, ids: dict, *, moe: bool):
    """Qwen3-VL (values as Qwen/Qwen3-VL-2B-Instruct) and Qwen3-VL-MoE (as
    Qwen/Qwen3-VL-30B-A3B-Instruct), sizes shrunk: the ViT of `_vision` with DeepStack taps after
    blocks [0, 1, 2] (the real 24-deep tower taps [5, 11, 17]: three levels, the last block not
    one of them); LLM with q/k norms, head_dim 16, theta 5e6, interleaved mRoPE section [4, 2, 2]
    (sums to head_dim / 2 as [24, 20, 20] does for head_dim 128). The MoE LLM: 4 experts, 2 per
    token, expert MLP 32 (the real one: 128 experts, 8 per token)."""
    text = dict(text, head_dim=16, max_position_embeddings=262144,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2],
                                 "mrope_interleaved": True})
    vision = _vision(text, deepstack_visual_indexes=[0, 1, 2])
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1,
                    mlp_only_layers=[])
        return Qwen3VLMoeConfig(vision_config=vision, text_config=text, **_common(ids))
    return Qwen3VLConfig(vision_config=vision, text_config=text, **_common(ids))


# The real hybrid pattern (full_attention_interval 4 on every released Qwen3.5): three
# gated-delta-net (linear attention) layers, then one full-attention layer; twice.
QWEN3_5_LAYER_TYPES = ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3 + ["full_attention"]


def qwen3_5_config(text: dict, ids: dict, *, moe: bool):
    """Qwen3.5 (values as Qwen/Qwen3.5-0.8B and -9B) and Qwen3.5-MoE (as Qwen/Qwen3.5-35B-A3B),
    sizes shrunk: the ViT of `_vision` without DeepStack (Qwen3.5's tower has none); an LLM of 8
    layers in the real pattern (`QWEN3_5_LAYER_TYPES`); full-attention layers with the gated q
    projection (query and output gate), q/k norms, head_dim 32 with partial rotary 0.25 (8 of 32
    dims rotate, as 64 of 256 do), theta 1e7, interleaved mRoPE section [2, 1, 1] (sums to the
    rotary dim / 2 as [11, 11, 10] does for 64); gated-delta-net layers with conv kernel 4, 2 key
    and 4 value heads of dim 16 (the real ones: 16 and 32 of dim 128). The MoE LLM: 4 experts, 2
    per token, expert and shared-expert MLP 32 (the real one: 256 experts, 8 per token, 512 each),
    untied embeddings as the real one."""
    text = dict(text, head_dim=32, max_position_embeddings=262144, layer_types=QWEN3_5_LAYER_TYPES,
                num_hidden_layers=len(QWEN3_5_LAYER_TYPES), linear_conv_kernel_dim=4, linear_key_head_dim=16,
                linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                 "mrope_section": [2, 1, 1], "mrope_interleaved": True})
    if moe:
        text.pop("intermediate_size")
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
                    tie_word_embeddings=False)
        return Qwen3_5MoeConfig(vision_config=_vision(text), text_config=text, **_common(ids, tie=False))
    return Qwen3_5Config(vision_config=_vision(text), text_config=text, **_common(ids))
