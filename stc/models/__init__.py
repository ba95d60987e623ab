"""Loading a Video-LLM: dispatch on the checkpoint's ``model_type`` to one family adapter.

``stc.load("llava-hf/llava-onevision-qwen2-0.5b-ov-hf")`` loads a real checkpoint (hub or local
path); ``stc.load("tiny-random/llava-onevision")`` / ``"tiny-random/qwen2.5-vl"`` / ``"tiny-random/qwen3-vl"``
/ ``"tiny-random/qwen3-vl-moe"`` / ``"tiny-random/qwen3.5"`` / ``"tiny-random/qwen3.5-moe"`` builds a tiny
random-weight model of the real architecture offline (tests, benchmarks, the offline demo).
Remote code is never trusted.
"""

from __future__ import annotations

import importlib
import os

import torch

from ..messages import one_line
from ..results import Answer, Encoded, OutOfMemory, Provenance, Stats
from .base import VideoLLM
from .family import FamilyAdapter
from .tiny import (TINY_IDS, TINY_LLAVA_ONEVISION, TINY_QWEN2_5_VL, TINY_QWEN3_5, TINY_QWEN3_5_MOE, TINY_QWEN3_VL,
                   TINY_QWEN3_VL_MOE, build_tiny)

# model_type -> (module, adapter class, transformers model class)
FAMILIES = {
    "llava_onevision": ("llava_onevision", "LlavaOnevisionAdapter", "LlavaOnevisionForConditionalGeneration"),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLAdapter", "Qwen2_5_VLForConditionalGeneration"),
    "qwen2_vl": ("qwen2_5_vl", "Qwen2VLAdapter", "Qwen2VLForConditionalGeneration"),
    "qwen3_vl": ("qwen3_vl", "Qwen3VLAdapter", "Qwen3VLForConditionalGeneration"),
    "qwen3_vl_moe": ("qwen3_vl", "Qwen3VLMoeAdapter", "Qwen3VLMoeForConditionalGeneration"),
    "qwen3_5": ("qwen3_5", "Qwen3_5Adapter", "Qwen3_5ForConditionalGeneration"),
    "qwen3_5_moe": ("qwen3_5", "Qwen3_5MoeAdapter", "Qwen3_5MoeForConditionalGeneration"),
}
TINY_TYPES = {TINY_LLAVA_ONEVISION: "llava_onevision", TINY_QWEN2_5_VL: "qwen2_5_vl", TINY_QWEN3_VL: "qwen3_vl",
              TINY_QWEN3_VL_MOE: "qwen3_vl_moe", TINY_QWEN3_5: "qwen3_5", TINY_QWEN3_5_MOE: "qwen3_5_moe"}
# The transformers releases stc is tested on, [low, high): keep equal to pyproject.toml's pin.
TRANSFORMERS_RANGE = ("5.24", "5.25")


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


def _declared_model_type(model_id: str, **hub_kwargs) -> str | None:
    """``model_type`` of the checkpoint's config.json read as plain JSON (no code), or None."""
    try:
        from transformers import PretrainedConfig

        config_dict, _ = PretrainedConfig.get_config_dict(model_id, **hub_kwargs)
    except Exception:  # noqa: BLE001 - unreadable: the caller reports its own error
        return None
    model_type = config_dict.get("model_type")
    return model_type if isinstance(model_type, str) else None


def check_transformers() -> None:
    """Raise ImportError unless the installed transformers is in the range stc is tested on.

    stc reads transformers' model internals (where features come from, hook points, position
    rules), which move between releases; the range is the one CI installs (pyproject.toml)."""
    import transformers
    from packaging.version import Version

    found = Version(transformers.__version__)
    if not (Version(TRANSFORMERS_RANGE[0]) <= found < Version(TRANSFORMERS_RANGE[1])):
        raise ImportError(
            f"stc supports transformers >={TRANSFORMERS_RANGE[0]},<{TRANSFORMERS_RANGE[1]}; found "
            f"{transformers.__version__}: pip install 'transformers>={TRANSFORMERS_RANGE[0]},<{TRANSFORMERS_RANGE[1]}'"
        )


def wrap(model, processor=None, *, model_id: str | None = None) -> VideoLLM:
    """Use stc on a model you already loaded: the same `VideoLLM` that `stc.load` returns.

    ``model``: a transformers ``...ForConditionalGeneration`` of a supported family (see
    `supported_types`), on any device/dtype/device_map. ``processor``: its processor; when None,
    the checkpoint's own is loaded from ``model.config._name_or_path`` (see `load`). Nothing is
    copied and nothing is patched until an `answer` call, whose hooks are removed when it
    returns: the model stays usable as it was.
    """
    check_transformers()
    import transformers

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter_cls = _adapter_class(model_type)
    expected = getattr(transformers, FAMILIES[model_type][2])
    if not isinstance(model, expected):
        raise TypeError(f"stc.wrap needs a {expected.__name__} (the model with its language-model head), "
                        f"got {type(model).__name__}")
    source = getattr(model.config, "_name_or_path", "") or ""
    if processor is None:
        if not source:
            raise ValueError("pass the model's processor: its config does not say which checkpoint it came from")
        processor = adapter_cls.load_processor(source)
    model.eval()
    return VideoLLM(model, processor, adapter_cls(model, processor), model_id=model_id or source or expected.__name__)


def load(
    model_id_or_path: str,
    *,
    device="auto",
    dtype="auto",
    attn_implementation: str | None = None,
    device_map=None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> VideoLLM:
    """Load a Video-LLM checkpoint (hub id or local path) as a `VideoLLM`.

    Dispatches on the checkpoint's ``model_type``: llava_onevision (LLaVA-OneVision,
    LLaVA-Video in HF format), qwen2_5_vl (Qwen2.5-VL), qwen2_vl (Qwen2-VL), qwen3_vl (Qwen3-VL),
    qwen3_vl_moe (Qwen3-VL-MoE), qwen3_5 (Qwen3.5), qwen3_5_moe (Qwen3.5-MoE). Other types raise
    NotImplementedError naming the supported ones; an unknown id raises ValueError.
    ``dtype="auto"`` is bfloat16 on CUDA and float32 on CPU. Attention runs on sdpa (flash
    attention 2 on CUDA when installed); stc never needs eager attention.
    ``device_map`` (e.g. "auto", to spread a model over several GPUs) is passed to
    ``from_pretrained`` and then ``device`` is not used; ``revision``, ``token``, ``cache_dir`` and
    ``local_files_only`` are passed to every ``from_pretrained`` (model, config, processor).
    The processor is the checkpoint's own where torchvision works (see
    `stc.models.processors`). Remote code is never run.
    """
    if not isinstance(model_id_or_path, (str, os.PathLike)) or not str(model_id_or_path).strip():
        raise ValueError("model id must be a non-empty string (a hub id, a local path or a tiny-random/... id)")
    check_transformers()
    model_id = str(model_id_or_path)
    dev = _resolve_device(device)
    if device_map is not None and device in (None, "auto") and torch.cuda.is_available():
        dev = torch.device("cuda")
    torch_dtype = _resolve_dtype(dtype, dev)

    if model_id in TINY_TYPES:
        model, processor = build_tiny(model_id, dtype=torch_dtype)
        model.to(dev)
        return wrap(model, processor, model_id=model_id)
    if model_id.startswith("tiny-random/"):
        raise ValueError(f"unknown tiny model {model_id!r}; available: {', '.join(TINY_IDS)}")

    from transformers import AutoConfig

    hub = {k: v for k, v in dict(revision=revision, token=token, cache_dir=cache_dir,
                                 local_files_only=local_files_only).items() if v is not None}
    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=False, **hub)
    except (OSError, ValueError) as e:
        # A config.json that was read but whose type transformers does not know (it would need
        # the checkpoint's own code): name the type, never run that code.
        declared = _declared_model_type(model_id, **hub) if isinstance(e, ValueError) else None
        if declared is not None:
            _adapter_class(declared)  # NotImplementedError naming the supported types
        raise ValueError(
            f"cannot load model {model_id!r}: not a local checkpoint and not reachable on the hub ({one_line(e, 240)})"
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
    model = model_cls.from_pretrained(model_id, dtype=torch_dtype, attn_implementation=attn_implementation,
                                      device_map=device_map, **hub)
    if device_map is None:
        model.to(dev)
    processor = adapter_cls.load_processor(model_id, **hub)
    return wrap(model, processor, model_id=model_id)


__all__ = [
    "Answer",
    "Encoded",
    "FamilyAdapter",
    "OutOfMemory",
    "Provenance",
    "Stats",
    "VideoLLM",
    "check_transformers",
    "load",
    "supported_types",
    "wrap",
]
