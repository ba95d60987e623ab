"""Tiny random-weight Video-LLMs of the real architectures, built offline.

Tests and the CPU demo need a model that exercises exactly the code paths of
LLaVA-OneVision and Qwen2.5-VL — the same token geometry (196 tokens per frame plus one
`image_newline`; 2x2-merged temporal patches with window attention), the same placeholder
expansion in the processors, the same `generate()` — but that builds in a second without
the Hugging Face hub. So the configs here copy the real checkpoints' non-size values (token
ids, rope theta, feature layer, patch/merge/window sizes) and shrink only widths and depths;
the tokenizer is a byte-level BPE trained in memory on a built-in corpus and carries the real
special tokens; the processors are the real transformers classes.

Without torchvision the processors take stc's pure-torch video processor
(`stc.models.processors`), as `stc.load` does for real checkpoints.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeForConditionalGeneration,
    Qwen3_5Tokenizer,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeForConditionalGeneration,
    Qwen3VLProcessor,
)

from .processors import build_processor, image_processor, video_processor
from .tiny_qwen3 import qwen3_5_config, qwen3_vl_config

__all__ = [
    "TINY_IDS",
    "TINY_LLAVA_ONEVISION",
    "TINY_QWEN2_5_VL",
    "TINY_QWEN3_5",
    "TINY_QWEN3_5_MOE",
    "TINY_QWEN3_VL",
    "TINY_QWEN3_VL_MOE",
    "build_tiny",
    "tiny_config",
    "tiny_processor",
    "tiny_tokenizer",
]

TINY_LLAVA_ONEVISION = "tiny-random/llava-onevision"
TINY_QWEN2_5_VL = "tiny-random/qwen2.5-vl"
TINY_QWEN3_VL = "tiny-random/qwen3-vl"
TINY_QWEN3_VL_MOE = "tiny-random/qwen3-vl-moe"
TINY_QWEN3_5 = "tiny-random/qwen3.5"
TINY_QWEN3_5_MOE = "tiny-random/qwen3.5-moe"
TINY_IDS = (TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL, TINY_QWEN3_VL, TINY_QWEN3_VL_MOE, TINY_QWEN3_5, TINY_QWEN3_5_MOE)
# Qwen3-VL (dense and MoE) share one tokenizer layout, chat template and processor; Qwen3.5
# (dense and MoE) the same processor class with Qwen3.5's tokenizer and template.
_QWEN3_VL_IDS = (TINY_QWEN3_VL, TINY_QWEN3_VL_MOE)
_QWEN3_5_IDS = (TINY_QWEN3_5, TINY_QWEN3_5_MOE)

# --------------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE with Qwen2's pre-tokenizer, trained in memory.
# --------------------------------------------------------------------------------------------

# Enough varied English for a few hundred merges; the exact text only fixes the vocabulary.
_CORPUS = """\
What is happening in this video? Describe the video in detail.
A man is riding a bicycle down a busy street while cars pass by on the left.
The woman picks up a red cup from the kitchen table and drinks from it.
Two children are playing football in the park on a sunny afternoon.
Which of the following best describes the main activity shown in the clip?
Answer with the option's letter from the given choices directly.
The camera pans slowly from the mountains to the lake and then to the forest.
How many people appear in the video, and what are they wearing?
At the beginning of the video a dog runs across the yard; at the end it sleeps.
The person opens the door, walks into the room, and turns on the light.
Please watch the video carefully and answer the question that follows.
Why does the cat jump onto the shelf after the ball falls to the floor?
The chef cuts the vegetables, heats the pan, and adds oil before cooking.
First the car stops at the red light, then it turns right at the corner.
What color is the shirt of the man standing next to the blue truck?
The weather changes from clear sky to heavy rain during the second half.
She is reading a book on the train while music plays in the background.
The players celebrate after scoring a goal in the final minute of the match.
Is the object moving toward the camera or away from it? Explain your answer.
The hand places the small green block on top of the large yellow block.
A bird lands on the branch, looks around, and flies away over the river.
The video shows a tutorial about how to assemble a wooden chair at home.
Summarize the events of the video in three short sentences.
Where does this scene most likely take place: a school, a hospital, or a market?
The speaker points at the screen and explains the chart to the audience.
Counting from one to ten: 1 2 3 4 5 6 7 8 9 10. The year was 2024.
Options: (A) walking (B) running (C) swimming (D) sitting. The answer is (B).
"""

# Qwen2's pre-tokenization regex (as in transformers' Qwen2Tokenizer), so text splits the way
# the real tokenizer splits it.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_BPE_VOCAB_SIZE = 1024

# Special tokens in the real checkpoints' id order (both start at Qwen2's <|endoftext|>,
# 151643 in the real vocabulary); here they follow the trained BPE vocabulary.
_LLAVA_OV_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
_QWEN_VL_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen3.5's vocabulary continues Qwen3's order after <|video_pad|> (up to the think markers).
_QWEN3_5_SPECIALS = _QWEN_VL_SPECIALS + (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)

# Chat templates equivalent to the checkpoints' own.
# llava-hf/llava-onevision-qwen2-*-ov-hf: media first, then text, "\n"-separated ChatML.
_LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen/Qwen2.5-VL-*-Instruct: default system prompt, media in content order.
_QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen/Qwen3-VL-*-Instruct: no default system prompt (Qwen3's templates dropped it), media in
# content order; the processor then writes each temporal patch of a video as
# "<t seconds><|vision_start|><|video_pad|>...<|vision_end|>" inside the template's pair.
_QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen/Qwen3.5-*: Qwen3-VL's layout; the assistant turn opens a closed think block unless
# enable_thinking=True (as the small checkpoints' default; the 9B and larger open one by default).
_QWEN3_5_CHAT_TEMPLATE = _QWEN3_VL_CHAT_TEMPLATE.replace(
    "<|im_start|>assistant\n{% endif %}",
    "<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking %}<think>\n"
    "{% else %}<think>\n\n</think>\n\n{% endif %}{% endif %}",
)


@lru_cache(maxsize=1)
def _bpe() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Train the byte-level BPE once per process: (vocab, merges), deterministic."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        # All 256 byte symbols, so any text (any language, emoji) stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_CORPUS.splitlines(), trainer)
    model = json.loads(tok.to_str())["model"]
    return dict(model["vocab"]), tuple(tuple(m) for m in model["merges"])


def _specials(name: str) -> tuple[str, ...]:
    if _check_name(name) == TINY_LLAVA_ONEVISION:
        return _LLAVA_OV_SPECIALS
    return _QWEN3_5_SPECIALS if name in _QWEN3_5_IDS else _QWEN_VL_SPECIALS


def _special_ids(name: str) -> dict[str, int]:
    """Ids of the special tokens: appended after the BPE vocabulary, in the real order."""
    base = len(_bpe()[0])
    return {token: base + i for i, token in enumerate(_specials(name))}


def _vocab_size(name: str) -> int:
    return len(_bpe()[0]) + len(_specials(name))


def tiny_tokenizer(name: str) -> Qwen2Tokenizer | Qwen3_5Tokenizer:
    """The offline tokenizer for a tiny model id: `Qwen2Tokenizer` (as LLaVA-OneVision, Qwen2.5-VL
    and Qwen3-VL), `Qwen3_5Tokenizer` for Qwen3.5 (its pre-tokenizer also keeps combining marks
    with letters)."""
    vocab, merges = _bpe()
    vocab = dict(vocab)
    ids = _special_ids(name)
    # Putting the specials into the vocabulary at fixed ids (instead of letting add_tokens
    # append them in whatever order) keeps config ids and tokenizer ids in lock-step.
    vocab.update(ids)
    extra = [t for t in ids if t not in ("<|endoftext|>", "<|im_end|>")]
    tokenizer = (Qwen3_5Tokenizer if name in _QWEN3_5_IDS else Qwen2Tokenizer)(
        vocab=vocab,
        merges=list(merges),
        # As the real tokenizer_config.json files: eos <|im_end|>, pad <|endoftext|>, no unk/bos.
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        extra_special_tokens=extra,
        model_max_length=32768,
    )
    assert len(tokenizer) == _vocab_size(name), "tiny tokenizer size drifted from its config"
    return tokenizer


# --------------------------------------------------------------------------------------------
# Configs: the real non-size values, tiny widths and depths.
# --------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if name not in TINY_IDS:
        raise ValueError(f"unknown tiny model {name!r}; known: {', '.join(TINY_IDS)}")
    return name


def tiny_config(name: str):
    """The config of a tiny model, without building weights.

    LLaVA-OneVision (values as llava-hf/llava-onevision-qwen2-0.5b-ov-hf, sizes shrunk):
      SigLIP 384px / patch 14 (27x27 patches), hidden 32, 2 layers, 2 heads, MLP 64, no head;
      feature layer -1, strategy "full"; projector gelu with bias;
      Qwen2 LLM hidden 64, 6 layers, 4 heads (head_dim 16), 2 kv heads, MLP 128, theta 1e6,
      tied embeddings.
    Qwen2.5-VL (values as Qwen/Qwen2.5-VL-3B-Instruct, sizes shrunk):
      ViT patch 14, temporal patch 2, merge 2, window 112, depth 4 with full attention in
      blocks [1, 3] (the real 32-deep tower uses [7, 15, 23, 31]: every 4th block, last one
      full), hidden 32, 2 heads, MLP 64, tokens_per_second 2;
      LLM hidden 64, 6 layers, 4 heads (head_dim 16), 2 kv heads, MLP 128, theta 1e6,
      mrope_section [2, 3, 3] (sums to head_dim / 2 as [16, 24, 24] does for head_dim 128).
    """
    ids = _special_ids(_check_name(name))
    vocab_size = _vocab_size(name)
    text = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    if name == TINY_LLAVA_ONEVISION:
        config = LlavaOnevisionConfig(
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=384,
                patch_size=14,
                hidden_act="gelu_pytorch_tanh",
                layer_norm_eps=1e-6,
                vision_use_head=False,
            ),
            text_config=dict(model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **text),
            image_token_index=ids["<image>"],
            video_token_index=ids["<video>"],
            projector_hidden_act="gelu",
            multimodal_projector_bias=True,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=True,
        )
    elif name in _QWEN3_VL_IDS:
        config = qwen3_vl_config(text, ids, moe=name == TINY_QWEN3_VL_MOE)
    elif name in _QWEN3_5_IDS:
        config = qwen3_5_config(text, ids, moe=name == TINY_QWEN3_5_MOE)
    else:
        config = Qwen2_5_VLConfig(
            vision_config=dict(
                depth=4,
                hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                hidden_act="silu",
                in_channels=3,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=112,
                fullatt_block_indexes=[1, 3],
                tokens_per_second=2,
                out_hidden_size=text["hidden_size"],
            ),
            text_config=dict(
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                **text,
            ),
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
            tie_word_embeddings=True,
        )
    config._name_or_path = name
    return config


def tiny_processor(name: str):
    """The real processor class for a tiny model id, with the offline tokenizer.

    LLaVA-OneVision: `LlavaOnevisionProcessor`, num_image_tokens 729 (27x27), strategy "full",
    SigLIP mean/std 0.5 (the checkpoint's preprocessor config); `<video>` expands to
    T*196 + 1 tokens. Qwen2.5-VL: `Qwen2_5_VLProcessor`, default Qwen2-VL image/video
    processors; `<|video_pad|>` expands to (T/2)(H/28)(W/28) tokens.
    """
    tokenizer = tiny_tokenizer(_check_name(name))
    if name == TINY_LLAVA_ONEVISION:
        siglip = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
        return build_processor(
            LlavaOnevisionProcessor,
            image_processor=image_processor("llava_onevision", **siglip),
            tokenizer=tokenizer,
            video_processor=video_processor("llava_onevision", **siglip),
            num_image_tokens=729,
            vision_feature_select_strategy="full",
            chat_template=_LLAVA_OV_CHAT_TEMPLATE,
            vision_aspect_ratio="anyres_max_9",
        )
    if name in _QWEN3_VL_IDS + _QWEN3_5_IDS:  # Qwen3.5 checkpoints name Qwen3VLProcessor too
        return build_processor(
            Qwen3VLProcessor,
            image_processor=image_processor("qwen3_vl", patch_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3),
            tokenizer=tokenizer,
            video_processor=video_processor("qwen3_vl"),
            chat_template=_QWEN3_5_CHAT_TEMPLATE if name in _QWEN3_5_IDS else _QWEN3_VL_CHAT_TEMPLATE,
        )
    return build_processor(
        Qwen2_5_VLProcessor,
        image_processor=image_processor("qwen2_vl"),
        tokenizer=tokenizer,
        video_processor=video_processor("qwen2_vl"),
        chat_template=_QWEN_VL_CHAT_TEMPLATE,
    )


# --------------------------------------------------------------------------------------------
# Models.
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def _zero_mean_patch_filters(model) -> None:
    """Make the vision tower's random patch filters sum to zero, as trained ones nearly do.

    A random filter has a non-zero sum, so on natural images (locally flat patches) every patch
    embeds as brightness x one shared direction and all visual tokens come out alike (mean
    cosine ~0.99): unified selection then keeps one token and the demo's grid shows nothing.
    Zero-sum filters respond to content, which gives tokens that differ as real ones do.
    """
    tower = model.model.visual if hasattr(model.model, "visual") else model.model.vision_tower
    embed = tower.patch_embed.proj if hasattr(tower, "patch_embed") else tower.embeddings.patch_embedding
    w = embed.weight
    w.sub_(w.mean(dim=tuple(range(1, w.dim())), keepdim=True))


def build_tiny(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Build (model, processor) for a tiny id in `TINY_IDS`; offline, about a second.

    Weights come from the model's own initialisation under `torch.manual_seed(seed)`, inside
    a forked RNG so the caller's random state is untouched: the same seed gives bit-identical
    weights. The model is in eval mode with sdpa attention.
    """
    config = tiny_config(name)
    cls = {
        TINY_LLAVA_ONEVISION: LlavaOnevisionForConditionalGeneration,
        TINY_QWEN2_5_VL: Qwen2_5_VLForConditionalGeneration,
        TINY_QWEN3_VL: Qwen3VLForConditionalGeneration,
        TINY_QWEN3_VL_MOE: Qwen3VLMoeForConditionalGeneration,
        TINY_QWEN3_5: Qwen3_5ForConditionalGeneration,
        TINY_QWEN3_5_MOE: Qwen3_5MoeForConditionalGeneration,
    }[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls._from_config(config, dtype=dtype, attn_implementation="sdpa")
    _zero_mean_patch_filters(model)
    model.eval()
    set_generation_ids(model, name)
    return model, tiny_processor(name)


def set_generation_ids(model, name: str) -> None:
    """Set ``model``'s stop/pad ids to those of ``name``'s offline tokenizer, as the
    checkpoints' generation_config.json does: stop at <|im_end|> (Qwen2.5-VL also at
    <|endoftext|>, as Qwen3-VL does), pad with <|endoftext|>. Also for bigger random-weight models that reuse the
    tokenizer (`stc.bench`'s 0.5B)."""
    ids = _special_ids(_check_name(name))
    gen = model.generation_config
    gen.eos_token_id = ids["<|im_end|>"] if name == TINY_LLAVA_ONEVISION else [ids["<|im_end|>"], ids["<|endoftext|>"]]
    gen.pad_token_id = ids["<|endoftext|>"]
    gen.bos_token_id = ids["<|endoftext|>"]
