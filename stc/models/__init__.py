"""Loading a Video-LLM: dispatch on the checkpoint's ``model_type`` to one family adapter.

``stc.load("llava-hf/llava-onevision-qwen2-0.5b-ov-hf")`` loads a real checkpoint (hub or local
path); ``stc.load("tiny-random/llava-onevision")`` / ``"tiny-random/qwen2.5-vl"`` builds a tiny
random-weight model of the real architecture offline (tests, benchmarks, the offline demo).
Remote code is never trusted.
"""

from __future__ import annotations

import importlib
import os

import torch

from .base import Answer, Encoded, FamilyAdapter, OutOfMemory, Provenance, Stats, VideoLLM
from .tiny import TINY_IDS, TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL, build_tiny

# model_type -> (module, adapter class, transformers model class)
FAMILIES = {
    "llava_onevision": ("llava_onevision", "LlavaOnevisionAdapter", "LlavaOnevisionForConditionalGeneration"),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLAdapter", "Qwen2_5_VLForConditionalGeneration"),
    "qwen2_vl": ("qwen2_5_vl", "Qwen2VLAdapter", "Qwen2VLForConditionalGeneration"),
}
TINY_TYPES = {TINY_LLAVA_ONEVISION: "llava_onevision", TINY_QWEN2_5_VL: "qwen2_5_vl"}


def supported_types() -> list[str]:
    return sorted(FAMILIES)


def _adapter_class(model_type: str):
    if model_type not in FAMILIES:
        raise NotImplementedError(
            f"model_type {model_type!r} is not supported by stc; supported types: {', '.join(supported_types())}"
        )
    module, name, _ = FAMILIES[model_type]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def _resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available")
    return resolved


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on CUDA, float32 on CPU."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in names:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(names)}, got {dtype!r}")
    return names[dtype]


def _load_processor(model_id: str, config):
    """The checkpoint's processor; without torchvision, the same processor with stc's
    pure-torch video processor (transformers' video processors need torchvision)."""
    from transformers import AutoProcessor

    from .tiny import video_processor

    try:
        return AutoProcessor.from_pretrained(model_id)
    except (ImportError, ValueError, TypeError) as first_error:
        import json

        from huggingface_hub import hf_hub_download
        from transformers import AutoTokenizer

        from .tiny import accepting_torch_video_processors

        model_type = config.model_type
        kind = "llava_onevision" if model_type == "llava_onevision" else "qwen2_vl"
        cfg = {}
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            try:
                path = os.path.join(model_id, name) if os.path.isdir(model_id) else hf_hub_download(model_id, name)
                with open(path) as f:
                    cfg = json.load(f)
                break
            except Exception:
                continue
        keep = ("image_mean", "image_std", "size", "patch_size", "temporal_patch_size", "merge_size",
                "min_pixels", "max_pixels")
        vp = video_processor(kind, **{k: v for k, v in cfg.items() if k in keep})
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        import transformers

        proc_cls = {"llava_onevision": transformers.LlavaOnevisionProcessor,
                    "qwen2_5_vl": transformers.Qwen2_5_VLProcessor,
                    "qwen2_vl": transformers.Qwen2VLProcessor}[model_type]
        image_proc = transformers.AutoImageProcessor.from_pretrained(model_id)
        extra = {}
        if model_type == "llava_onevision":
            side = config.vision_config.image_size // config.vision_config.patch_size
            extra = dict(num_image_tokens=side * side,
                         vision_feature_select_strategy=config.vision_feature_select_strategy)
        try:
            with accepting_torch_video_processors():
                return proc_cls(image_processor=image_proc, tokenizer=tokenizer, video_processor=vp,
                                chat_template=getattr(tokenizer, "chat_template", None), **extra)
        except Exception as e:  # pragma: no cover - depends on the checkpoint
            raise RuntimeError(f"could not build a processor for {model_id}: {e}") from first_error


def _one_line(error: BaseException, limit: int = 240) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _declared_model_type(model_id: str) -> str | None:
    """``model_type`` of the checkpoint's config.json read as plain JSON (no code), or None."""
    try:
        from transformers import PretrainedConfig

        config_dict, _ = PretrainedConfig.get_config_dict(model_id)
    except Exception:  # noqa: BLE001 - unreadable: the caller reports its own error
        return None
    model_type = config_dict.get("model_type")
    return model_type if isinstance(model_type, str) else None


def load(model_id_or_path: str, *, device="auto", dtype="auto", attn_implementation: str | None = None) -> VideoLLM:
    """Load a Video-LLM checkpoint (hub id or local path) as a `VideoLLM`.

    Dispatches on the checkpoint's ``model_type``: llava_onevision (LLaVA-OneVision,
    LLaVA-Video in HF format), qwen2_5_vl (Qwen2.5-VL), qwen2_vl (Qwen2-VL). Other types raise
    NotImplementedError naming the supported ones; an unknown id raises ValueError.
    ``dtype="auto"`` is bfloat16 on CUDA and float32 on CPU. Attention runs on sdpa (flash
    attention 2 on CUDA when installed); stc never needs eager attention.
    """
    if not isinstance(model_id_or_path, (str, os.PathLike)) or not str(model_id_or_path).strip():
        raise ValueError("model id must be a non-empty string (a hub id, a local path or a tiny-random/... id)")
    model_id = str(model_id_or_path)
    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)

    if model_id in TINY_TYPES:
        model, processor = build_tiny(model_id, dtype=torch_dtype)
        model.to(dev)
        return VideoLLM(model, processor, _adapter_class(TINY_TYPES[model_id])(model, processor), model_id=model_id)
    if model_id.startswith("tiny-random/"):
        raise ValueError(f"unknown tiny model {model_id!r}; available: {', '.join(TINY_IDS)}")

    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=False)
    except (OSError, ValueError) as e:
        # A config.json that was read but whose type transformers does not know (it would need
        # the checkpoint's own code): name the type, never run that code.
        declared = _declared_model_type(model_id) if isinstance(e, ValueError) else None
        if declared is not None:
            _adapter_class(declared)  # NotImplementedError naming the supported types
        raise ValueError(
            f"cannot load model {model_id!r}: not a local checkpoint and not reachable on the hub ({_one_line(e)})"
        ) from e
    adapter_cls = _adapter_class(config.model_type)
    import transformers

    model_cls = getattr(transformers, FAMILIES[config.model_type][2])
    if attn_implementation is None:
        attn_implementation = "sdpa"
        if dev.type == "cuda":
            try:
                import flash_attn  # noqa: F401

                attn_implementation = "flash_attention_2"
            except ImportError:
                pass
    model = model_cls.from_pretrained(model_id, dtype=torch_dtype, attn_implementation=attn_implementation)
    model.to(dev).eval()
    processor = _load_processor(model_id, config)
    return VideoLLM(model, processor, adapter_cls(model, processor), model_id=model_id)


__all__ = [
    "Answer",
    "Encoded",
    "FamilyAdapter",
    "OutOfMemory",
    "Provenance",
    "Stats",
    "VideoLLM",
    "load",
    "supported_types",
]
