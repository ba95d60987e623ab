"""LLM FLOPs of a Video-LLM answer, by the paper's convention.

The paper reports cost as the FLOPs of the language model only (the vision encoder and the
compressor are left out), with visual tokens as the sequence length. Per decoder layer over n
tokens

    C(n) = 4 n d^2 + 2 n^2 d + 2 n d m        (d hidden size, m FFN intermediate size)

(q/k/v/o projections, attention scores and weighted sum, FFN), prefill is the sum of C over
layers, and decoding R tokens adds per layer

    R * [(4 d^2 + 2 d m) + 2 (d n + d (R + 1) / 2)]

(projections and FFN of one token, attention over the n cached tokens plus the R generated
ones on average). Stage 2 and FastV-like pruning shorten the sequence from layer K on, which
is what `inner_layer` / `inner_keep` express. With this module the paper's table for
LLaVA-OneVision-7B, 32 x 196 tokens, comes out as 41.4 T (vanilla), 1.1 T (2%/1%),
1.2 T (2% without stage 2), 5.5 T (FastV at K=3 keeping 2%).

Hybrid LLMs (Qwen3.5: three gated-delta-net layers for every full-attention one) have no
attention matrix in their linear-attention layers: their token mixing is a recurrence linear in
n with a fixed-size state. Such a layer counts the convention's projections and FFN,
4 n d^2 + 2 n d m, and no 2 n^2 d term; decoding adds R (4 d^2 + 2 d m) and no attention over the
cache. The recurrence's own cost (per token about heads x d_k x d_v multiply-adds, under 1% of
4 d^2 on the released sizes) is left out, as the convention leaves out norms, rotary and softmax.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

from .arith import default_inner_layer, round_half_up
from .checks import check_int

__all__ = ["ARCHITECTURES", "LLMDims", "default_inner_layer", "flops", "llm_dims", "register_configs"]


@dataclass(frozen=True)
class LLMDims:
    """The three sizes the FLOPs convention needs from a decoder-only LLM."""

    hidden_size: int  # d
    intermediate_size: int  # m
    num_hidden_layers: int  # L
    # Layers with linear attention (no n^2 term; see the module docstring); () for a plain LLM.
    linear_attention_layers: tuple[int, ...] = ()


def _hybrid(d: int, m: int, layers: int, interval: int = 4) -> LLMDims:
    """Qwen3.5's pattern: every ``interval``-th layer full attention, the others linear."""
    return LLMDims(d, m, layers, tuple(i for i in range(layers) if (i + 1) % interval))


_QWEN2_7B = LLMDims(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28)

# Text-model sizes of known checkpoints, from their config.json (offline: the hub is not needed
# to count FLOPs). More ids come from `register_configs` (stc.models registers its tiny models).
ARCHITECTURES: dict[str, LLMDims] = {
    # LLaVA-OneVision and LLaVA-Video: Qwen2 LLMs.
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf": LLMDims(896, 4864, 24),
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": _QWEN2_7B,
    "llava-hf/llava-onevision-qwen2-72b-ov-hf": LLMDims(8192, 29568, 80),
    "llava-hf/LLaVA-Video-7B-Qwen2-hf": _QWEN2_7B,
    # Qwen2-VL / Qwen2.5-VL.
    "Qwen/Qwen2-VL-2B-Instruct": LLMDims(1536, 8960, 28),
    "Qwen/Qwen2-VL-7B-Instruct": _QWEN2_7B,
    "Qwen/Qwen2.5-VL-3B-Instruct": LLMDims(2048, 11008, 36),
    "Qwen/Qwen2.5-VL-7B-Instruct": _QWEN2_7B,
    "Qwen/Qwen2.5-VL-72B-Instruct": LLMDims(8192, 29568, 80),
    # Qwen3-VL: Qwen3 LLMs.
    "Qwen/Qwen3-VL-2B-Instruct": LLMDims(2048, 6144, 28),
    "Qwen/Qwen3-VL-4B-Instruct": LLMDims(2560, 9728, 36),
    "Qwen/Qwen3-VL-8B-Instruct": LLMDims(4096, 12288, 36),
    "Qwen/Qwen3-VL-32B-Instruct": LLMDims(5120, 25600, 64),
    # Qwen3-VL-MoE: m = the ACTIVE experts' FFN width (8 of 128 experts x moe_intermediate_size).
    "Qwen/Qwen3-VL-30B-A3B-Instruct": LLMDims(2048, 8 * 768, 48),
    "Qwen/Qwen3-VL-235B-A22B-Instruct": LLMDims(4096, 8 * 1536, 94),
}
ARCHITECTURES.update({
    # Qwen3.5 (natively multimodal, hybrid): full attention in every 4th layer.
    "Qwen/Qwen3.5-0.8B": _hybrid(1024, 3584, 24),
    "Qwen/Qwen3.5-9B": _hybrid(4096, 12288, 32),
    "Qwen/Qwen3.5-27B": _hybrid(5120, 17408, 64),
    # Qwen3.5-MoE: m = the active experts' width plus the shared expert's.
    "Qwen/Qwen3.5-35B-A3B": _hybrid(2048, 8 * 512 + 512, 40),
    "Qwen/Qwen3.5-397B-A17B": _hybrid(4096, 10 * 1024 + 1024, 60),
})
for _size in ("2B", "4B", "8B", "32B", "30B-A3B", "235B-A22B"):  # the Thinking variants: the same LLMs
    ARCHITECTURES[f"Qwen/Qwen3-VL-{_size}-Thinking"] = ARCHITECTURES[f"Qwen/Qwen3-VL-{_size}-Instruct"]


# Model-id prefix ("tiny-random/") -> (a function returning that id's transformers config, one
# listing the ids it knows).
_CONFIG_SOURCES: dict[str, tuple[Callable[[str], object], Callable[[], list[str]]]] = {}


def register_configs(prefix: str, config_of: Callable[[str], object], known: Callable[[], list[str]]) -> None:
    """Let `llm_dims` resolve ids starting with ``prefix`` through ``config_of(id)`` (a
    transformers config; ValueError for an id it does not know); ``known()`` lists those ids.

    How a higher layer teaches this module model ids it cannot know by itself (stc registers
    its tiny-random models) without this module importing that layer.
    """
    _CONFIG_SOURCES[prefix] = (config_of, known)


def _known_ids() -> list[str]:
    return sorted(ARCHITECTURES) + [i for _, known in _CONFIG_SOURCES.values() for i in known()]


def _dims_from_config(config) -> LLMDims:
    # Multimodal configs nest the LLM's config (text_config); get_text_config() finds it and
    # returns the config itself for a plain LLM config.
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    text = getattr(text, "text_config", None) or text
    try:
        types = getattr(text, "layer_types", None) or ()
        linear = tuple(i for i, kind in enumerate(types) if kind == "linear_attention")
        return LLMDims(int(text.hidden_size), _ffn_width(text), int(text.num_hidden_layers), linear)
    except AttributeError as err:
        raise ValueError(
            f"{type(config).__name__} has no hidden_size / intermediate_size / num_hidden_layers "
            "in its text config"
        ) from err


def _ffn_width(text) -> int | float:
    """m: the FFN width one token goes through. A mixture of experts counts its ACTIVE experts
    (num_experts_per_tok x moe_intermediate_size, plus a shared expert's width where there is
    one); layers that stay dense (``mlp_only_layers``, or off ``decoder_sparse_step``) count
    ``intermediate_size``, averaged over the layers (the cost is linear in m)."""
    k, expert = getattr(text, "num_experts_per_tok", None), getattr(text, "moe_intermediate_size", None)
    if not (k and expert and getattr(text, "num_experts", None)):
        return int(text.intermediate_size)
    sparse = k * expert + (getattr(text, "shared_expert_intermediate_size", None) or 0)
    layers = int(text.num_hidden_layers)
    dense_layers = set(getattr(text, "mlp_only_layers", None) or ())
    step = getattr(text, "decoder_sparse_step", None) or 1
    widths = [int(text.intermediate_size) if i in dense_layers or (i + 1) % step else sparse for i in range(layers)]
    mean = sum(widths) / layers
    return int(mean) if mean == int(mean) else mean


def llm_dims(model) -> LLMDims:
    """The LLM sizes (d, m, L) of `model`.

    `model` may be an `LLMDims`; a checkpoint id known to `ARCHITECTURES` or a tiny-random id;
    a transformers config (multimodal or text-only); or anything with a `.config` (a loaded
    model, an stc wrapper).
    """
    if isinstance(model, LLMDims):
        return model
    if isinstance(model, str):
        if model in ARCHITECTURES:
            return ARCHITECTURES[model]
        for prefix, (config_of, _) in _CONFIG_SOURCES.items():
            if model.startswith(prefix):
                try:
                    return _dims_from_config(config_of(model))
                except ValueError:
                    break
        raise ValueError(f"unknown model id {model!r}; known ids: {', '.join(_known_ids())}")
    if hasattr(model, "hidden_size") or hasattr(model, "get_text_config") or hasattr(model, "text_config"):
        return _dims_from_config(model)
    if hasattr(model, "config"):
        return llm_dims(model.config)
    raise ValueError(
        f"cannot read LLM sizes from a {type(model).__name__}; pass a model id, a config, or an "
        "object with .config"
    )


def flops(
    model,
    visual_tokens: int,
    *,
    inner_layer: int | None = None,
    inner_keep: float = 1.0,
    text_tokens: int = 0,
    decode_tokens: int = 100,
) -> float:
    """LLM FLOPs of prefill plus decoding `decode_tokens` tokens, by the paper's convention.

    Args:
        model: id, config, model or wrapper (see `llm_dims`).
        visual_tokens: visual tokens entering the LLM (after any stage-1 compression).
        inner_layer: K; layers >= K see only round(inner_keep * visual_tokens) visual tokens
            (half up; stage 2 / FastV). None means no pruning inside the LLM.
        inner_keep: fraction of visual tokens kept from layer K on, in (0, 1].
        text_tokens: text tokens added to n in every layer (the paper's table uses 0).
        decode_tokens: R, generated tokens.
    Returns:
        FLOPs as a float (divide by 1e12 for the paper's "T").
    """
    dims = llm_dims(model)
    d, m, num_layers = dims.hidden_size, dims.intermediate_size, dims.num_hidden_layers
    visual = check_int("visual_tokens", visual_tokens, 0)
    text = check_int("text_tokens", text_tokens, 0)
    decode = check_int("decode_tokens", decode_tokens, 0)
    if isinstance(inner_keep, bool) or not isinstance(inner_keep, numbers.Real) or not 0 < inner_keep <= 1:
        raise ValueError(f"inner_keep must be a number in (0, 1], got {inner_keep!r}")
    if inner_layer is not None:
        inner_layer = check_int("inner_layer", inner_layer, 0)
        if inner_layer > num_layers:
            raise ValueError(f"inner_layer must be <= num_hidden_layers ({num_layers}), got {inner_layer}")

    full = visual + text
    pruned = full
    if inner_layer is not None and inner_keep < 1.0:
        # Half-up rounding, as stc.config rounds budgets (125 * 0.5 -> 63).
        pruned = round_half_up(inner_keep * visual) + text

    total = 0.0
    linear = set(dims.linear_attention_layers)
    for layer in range(num_layers):
        n = pruned if inner_layer is not None and layer >= inner_layer else full
        attends = layer not in linear  # a linear-attention layer has no n^2 term
        prefill = 4 * n * d**2 + 2 * n**2 * d * attends + 2 * n * d * m
        decoding = decode * ((4 * d**2 + 2 * d * m) + 2 * (d * n + d * (decode + 1) / 2) * attends)
        total += prefill + decoding
    return float(total)
