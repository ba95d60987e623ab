"""A tiny random-weight Qwen2.5-VL, Qwen3-VL or Qwen3-VL-MoE checkpoint on disk that vLLM serves offline, and a
video for it.

The plugin's tests and benchmark need a checkpoint vLLM loads from a folder without the hub:
stc's tiny Qwen2.5-VL (`stc.models.tiny`: the real token ids, tokenizer, processors, window
attention with full attention in blocks 1 and 3) at sizes vLLM's CPU kernels take (head
dimension 32), written with ``save_pretrained``. Its weights are re-drawn at ~1/sqrt(fan_in)
(q/k larger): the default 0.02 init makes the output ignore positions entirely, and then no
position test could fail. ``size`` picks "tiny" (seconds on a CPU) or "7b" (Qwen2.5-VL-7B's
shapes, random weights: for a GPU benchmark).

``model_type="qwen3_vl"``: stc's tiny Qwen3-VL (`stc.models.tiny_qwen3`: the real processor
classes, DeepStack taps after vision blocks 0-2, interleaved mRoPE) with head dimension 32 in
the LLM (mRoPE section [8, 4, 4]) and the vision tower (hidden 64, 2 heads), 4 LLM layers so
that DeepStack's 3 levels land inside it; frames of at most 224 x 224 pixels (7 x 7 merged
tokens per temporal patch at patch 16). Only ``size="tiny"``. ``model_type="qwen3_vl_moe"``: the
same from stc's tiny Qwen3-VL-MoE (4 experts, 2 per token, expert MLP 32; the experts stored
as released checkpoints store them).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["make_video", "write_checkpoint"]

# Frames are resized by the checkpoint's video processor to at most this many pixels (then to a
# multiple of 28): 224 x 224 -> a 16 x 16 patch grid -> 64 merged tokens per temporal patch.
_MAX_PIXELS = 224 * 224

_SIZES = {
    "tiny": dict(text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2), mrope=[4, 6, 6],
                 vision=dict(hidden_size=64, intermediate_size=128, num_heads=2, depth=4, fullatt_block_indexes=[1, 3])),
    "7b": dict(text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4), mrope=[16, 24, 24],
               vision=dict(hidden_size=1280, intermediate_size=3420, num_heads=16, depth=32,
                           fullatt_block_indexes=[7, 15, 23, 31])),
}


@torch.no_grad()
def _reinit(model, seed: int) -> None:
    """Weights at ~1/sqrt(fan_in) (q/k and the LM head x2) so the output depends on positions;
    embeddings at 0.25. First-token log-probabilities then spread over several tokens."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in sorted(model.named_parameters()):
        if param.dim() == 1:
            param.copy_(torch.ones_like(param) if "norm" in name or "ln_q" in name else torch.zeros_like(param))
            continue
        # MoE experts are stacked [experts, out, in]; everything else is [out, in, ...]
        fan_in = param.shape[-1] if param.dim() == 3 and ".experts." in name else math.prod(param.shape[1:])
        std = 0.25 if "embed_tokens" in name else 1.0 / math.sqrt(fan_in)
        if any(k in name for k in ("q_proj", "k_proj", ".qkv.", "lm_head")):
            std *= 2.0
        param.copy_(torch.randn(param.shape, generator=gen) * std)


def write_checkpoint(path: str | Path, *, size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32,
                     model_type: str = "qwen2_5_vl") -> Path:
    """Write a random-weight Qwen2.5-VL, Qwen3-VL or Qwen3-VL-MoE (config, safetensors, tokenizer,
    processors) to ``path``."""
    if model_type in ("qwen3_vl", "qwen3_vl_moe"):
        if size != "tiny":
            raise ValueError(f"the {model_type} checkpoint comes in size 'tiny' only, got {size!r}")
        return _write_qwen3_vl(Path(path), seed, dtype, moe=model_type == "qwen3_vl_moe")
    if model_type != "qwen2_5_vl":
        raise ValueError(f"model_type must be 'qwen2_5_vl', 'qwen3_vl' or 'qwen3_vl_moe', got {model_type!r}")
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ...models.tiny import TINY_QWEN2_5_VL, set_generation_ids, tiny_config, tiny_processor

    if size not in _SIZES:
        raise ValueError(f"size must be one of {sorted(_SIZES)}, got {size!r}")
    spec = _SIZES[size]
    base = tiny_config(TINY_QWEN2_5_VL).to_dict()
    text = {k: v for k, v in base["text_config"].items() if k != "layer_types"}  # rebuilt for the new depth
    text.update(spec["text"], tie_word_embeddings=False)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": spec["mrope"]}
    vision = {**base["vision_config"], **spec["vision"], "out_hidden_size": spec["text"]["hidden_size"]}
    keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False,
                              **{k: base[k] for k in keys})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)
    if size == "tiny":
        _reinit(model, seed)
    set_generation_ids(model, TINY_QWEN2_5_VL)
    model.to(dtype)
    path = Path(path)
    model.save_pretrained(path)
    processor = tiny_processor(TINY_QWEN2_5_VL)
    for proc in (processor.image_processor, processor.video_processor):
        proc.size = {"shortest_edge": 56 * 56, "longest_edge": _MAX_PIXELS}
        for attr in ("min_pixels", "max_pixels"):
            if hasattr(proc, attr):
                setattr(proc, attr, 56 * 56 if attr == "min_pixels" else _MAX_PIXELS)
    processor.save_pretrained(path)
    return path


def _write_qwen3_vl(path: Path, seed: int, dtype: torch.dtype, moe: bool = False) -> Path:
    from transformers import (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig,
                              Qwen3VLMoeForConditionalGeneration)

    from ...models.tiny import TINY_QWEN3_VL, TINY_QWEN3_VL_MOE, set_generation_ids, tiny_config, tiny_processor

    name = TINY_QWEN3_VL_MOE if moe else TINY_QWEN3_VL
    config_class, model_class = ((Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe
                                 else (Qwen3VLConfig, Qwen3VLForConditionalGeneration))
    base = tiny_config(name).to_dict()
    text = {k: v for k, v in base["text_config"].items() if k != "layer_types"}
    text.update(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=32, tie_word_embeddings=False)
    if moe:
        # transformers always renormalises the top-k routing weights (its config dropped the key);
        # vLLM 0.32 reads it from the config, as the real checkpoints' config.json gives it
        text.update(moe_intermediate_size=32, norm_topk_prob=True)
    text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": [8, 4, 4]}
    vision = {**base["vision_config"], "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
              "out_hidden_size": 128}
    keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    config = config_class(text_config=text, vision_config=vision, tie_word_embeddings=False,
                          **{k: base[k] for k in keys})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class._from_config(config, dtype=torch.float32)
    _reinit(model, seed)
    set_generation_ids(model, name)
    model.to(dtype)
    model.save_pretrained(path)
    if moe:
        _experts_as_released(path)
    processor = tiny_processor(name)
    for proc in (processor.image_processor, processor.video_processor):
        # the video processor sizes frames from the whole video's pixel count: up to 32 frames at 224 x 224
        proc.size = {"shortest_edge": 64 * 64, "longest_edge": _MAX_PIXELS * (32 if proc is processor.video_processor else 1)}
    processor.save_pretrained(path)
    return path


def _experts_as_released(path: Path) -> None:
    """Store the stacked expert weights as the released Qwen3-VL-MoE checkpoints do, [experts, in,
    out], which is what vLLM 0.32 loads: transformers keeps them as [experts, out, in] and saves
    them so, transposing released ones on load (only where the shapes differ, so no expert
    matrix here is square: 2 x 32 and 32 against hidden 128)."""
    from safetensors.torch import load_file, save_file

    for file in path.glob("*.safetensors"):
        tensors = load_file(file)
        for name, tensor in tensors.items():
            if name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
                tensors[name] = tensor.transpose(1, 2).contiguous()
        save_file(tensors, file, metadata={"format": "pt"})


def make_video(num_frames: int, *, side: int = 224, seed: int = 0) -> np.ndarray:
    """uint8 [T, side, side, 3] frames: a fixed textured background with a bright square moving
    across it, so some tokens repeat over time and some do not (as in real video)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(side // 28, side // 28, 3)).astype(np.float32)
    background = np.kron(coarse, np.ones((28, 28, 1), dtype=np.float32))
    background += rng.normal(0, 12, size=background.shape)
    frames = np.repeat(background[None], num_frames, axis=0)
    box = side // 4
    for t in range(num_frames):
        x = (t * (side - box)) // max(1, num_frames - 1)
        frames[t, box : 2 * box, x : x + box] = (255, 240, 40)
    return np.clip(frames, 0, 255).astype(np.uint8)
