"""The toy model and its inputs: `toy_config` / `build_toy` (LLaVA-OneVision of the real token
geometry, small widths `ARCH`), the pixels, patch labels and tower features the trainer reads, and
`Prompts` (each question type's token ids, as `stc.eval` and the adapter build them)."""

from __future__ import annotations

import numpy as np
import torch

from .data import COLOURS, SHAPES, TYPES

DESCRIBE = "Describe the video."  # the caption prompt stage B also trains on

__all__ = ["ARCH", "DESCRIBE", "Prompts", "build_toy", "patch_labels", "pixel_values", "toy_config", "vision_features"]

# Widths and depths; every other value is the real checkpoint's (stc.models.tiny.tiny_config).
ARCH = dict(
    vision_hidden=64,
    vision_layers=3,
    vision_heads=4,  # head_dim 16
    text_hidden=128,
    text_layers=4,
    text_heads=8,  # head_dim 16
    text_kv_heads=2,
)
SHORT_FRAMES = 4  # stage B's first clips (every type fits: MIN_FRAMES <= 4)
PATCHES = 27  # SigLIP at 384 px, patch 14: 27 x 27 patches over the top-left 378 x 378 pixels
PATCH = 14
SHAPE_CLASSES = 1 + len(SHAPES)  # background + each shape
COLOUR_CLASSES = 2 + len(COLOURS)  # background, grey, each colour


def toy_config(arch: dict | None = None):
    """The LLaVA-OneVision config of the toy: `tiny_config`'s with ``arch``'s widths."""
    from stc.models.tiny import TINY_LLAVA_ONEVISION, tiny_config

    a = {**ARCH, **(arch or {})}
    config = tiny_config(TINY_LLAVA_ONEVISION)
    v, t = config.vision_config, config.text_config
    v.hidden_size, v.intermediate_size = a["vision_hidden"], 4 * a["vision_hidden"]
    v.num_hidden_layers, v.num_attention_heads = a["vision_layers"], a["vision_heads"]
    t.hidden_size, t.intermediate_size = a["text_hidden"], 3 * a["text_hidden"]
    t.num_hidden_layers, t.num_attention_heads = a["text_layers"], a["text_heads"]
    t.num_key_value_heads = a["text_kv_heads"]
    t.head_dim = a["text_hidden"] // a["text_heads"]
    t.layer_types = ["full_attention"] * a["text_layers"]
    config._name_or_path = "stc-toy/llava-onevision"
    return config


def build_toy(seed: int = 0, arch: dict | None = None):
    """(model, processor): the toy's initial weights from ``seed`` (the caller's RNG untouched)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from stc.models.tiny import TINY_LLAVA_ONEVISION, set_generation_ids, tiny_processor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration._from_config(
            toy_config(arch), dtype=torch.float32, attn_implementation="sdpa"
        )
    set_generation_ids(model, TINY_LLAVA_ONEVISION)
    return model, tiny_processor(TINY_LLAVA_ONEVISION)


# -- inputs --------------------------------------------------------------------------------------
def pixel_values(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, 384, 384, 3] -> float [T, 3, 384, 384] as the toy's processor makes them (SigLIP:
    x / 255, mean 0.5, std 0.5; at 384 px its resize is the identity). tests/test_toy.py holds
    this against the processor itself."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


def patch_labels(labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [T, 384, 384, 2] pixel labels -> (shape, colour) long [T, 27 * 27]: per patch, the
    class covering most of its pixels (the background unless an object covers over a third)."""
    crop = labels[:, : PATCHES * PATCH, : PATCHES * PATCH]
    t = crop.shape[0]
    out = []
    for channel, classes in ((0, SHAPE_CLASSES), (1, COLOUR_CLASSES)):
        blocks = crop[..., channel].reshape(t, PATCHES, PATCH, PATCHES, PATCH).transpose(0, 1, 3, 2, 4)
        counts = np.stack([(blocks == c).sum(axis=(-1, -2)) for c in range(classes)], axis=-1)
        objects = counts[..., 1:]
        best = 1 + objects.argmax(-1)
        label = np.where(objects.max(-1) * 3 > PATCH * PATCH, best, 0)
        out.append(torch.from_numpy(label.reshape(t, -1).astype(np.int64)))
    return out[0], out[1]


def vision_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """[T, 3, 384, 384] -> [T, 729, Dv]: the tower's output at the layer LLaVA-OneVision reads
    (config.vision_feature_layer, strategy "full"), before the projector."""
    out = model.model.vision_tower(pixels, output_hidden_states=True, return_dict=True)
    return out.hidden_states[model.config.vision_feature_layer]


class Prompts:
    """Token ids of each question type's prompt, as `stc.eval` + the adapter build them."""

    def __init__(self, model, processor):
        from stc.eval import build_prompt
        from stc.models.llava_onevision import LlavaOnevisionAdapter

        from .data import OPTIONS, QUESTIONS

        adapter = LlavaOnevisionAdapter(model, processor)
        tok = self.tokenizer = processor.tokenizer
        self.video_id = model.config.video_token_id
        self.end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.ids = {kind: adapter.prompt_ids(build_prompt(QUESTIONS[kind], OPTIONS[kind], "videomme")) for kind in TYPES}
        self.describe_ids = adapter.prompt_ids(DESCRIBE)

    def answer(self, kind: str, text: str, visual: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input_ids [1, L], targets [n], start): the prompt of ``kind`` with ``visual`` video
        placeholders from ``start`` on, then the answer ``text`` (an option's text, what
        `stc.eval`'s parser reads as that option); the loss is on its tokens and <|im_end|>."""
        return self._teacher_forced(self.ids[kind], self.tokenizer(text, add_special_tokens=False)["input_ids"]
                                    + [self.end_id], visual)

    def description(self, text: str, visual: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The same for `DESCRIBE`'s prompt and ``text`` (a `describe` sentence) as the answer."""
        return self._teacher_forced(self.describe_ids, self.tokenizer(text, add_special_tokens=False)["input_ids"]
                                    + [self.end_id], visual)

    def _teacher_forced(self, prompt, targets: list[int], visual: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        before, after = prompt
        ids = before + [self.video_id] * visual + after + targets[:-1]
        return torch.tensor([ids]), torch.tensor(targets), len(before)

