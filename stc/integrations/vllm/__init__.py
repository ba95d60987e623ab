"""stc's stage 1 inside vLLM, as a general plugin (installed with stc beside vLLM: README,
"Serving with vLLM", ``make vllm-cpu-env`` on a CPU machine).

Installed beside vLLM, stc's entry point ``vllm.general_plugins: stc`` runs `register` in every
vLLM process. It registers one model class per family (`ARCHITECTURES`: Qwen2.5-VL
``STCQwen2_5_VLForConditionalGeneration``, Qwen3-VL ``STCQwen3VLForConditionalGeneration``,
Qwen3-VL-MoE ``STCQwen3VLMoeForConditionalGeneration``),
selected per engine with ``hf_overrides``:

    vllm serve Qwen/Qwen2.5-VL-7B-Instruct --hf-overrides \\
        '{"architectures": ["STCQwen2_5_VLForConditionalGeneration"], "stc_retention": 0.1}'

    LLM(model=..., hf_overrides=stc.integrations.vllm.hf_overrides(retention=0.1, model_type="qwen3_vl"))

Keys: ``stc_retention`` (required), ``stc_tau``, ``stc_cluster_ratio``, ``stc_knn_k`` (the
paper's defaults). They are checked in the main process when the engine's model config is
built (seconds, before any worker starts), as is the checkpoint's model type: a bad value, an
unsupported checkpoint or another family's stc class stops there with stc's one-line message. Engines that do not select the
class run exactly as without the plugin. On
vLLM's CPU build the plugin also teaches the CPU model runner to enable vLLM's pruned-position
path for stc's model (that runner never enables it by itself);
``STC_VLLM_CPU_PRUNING_FIX=all`` extends the fix to every pruning model (vLLM's EVS).

Importing this module imports no vLLM and no transformers model code.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from .stage1 import ARCHITECTURES, OVERRIDE_KEYS, Stage1Options, check_config, options_from_config

__all__ = ["ARCHITECTURE", "ARCHITECTURES", "OVERRIDE_KEYS", "ConfigError", "Stage1Options", "hf_overrides",
           "options_from_config", "register"]

ARCHITECTURE = ARCHITECTURES["qwen2_5_vl"]  # the first family's, kept for existing callers
# architecture -> "module:Class"; the module is the family's model type, but Qwen3-VL-MoE's class
# lives beside the Qwen3-VL one it shares everything with
_MODULES = {"qwen3_vl_moe": "qwen3_vl"}
_CLASS_PATHS = {arch: f"{__name__}.{_MODULES.get(model_type, model_type)}:{arch}"
                for model_type, arch in ARCHITECTURES.items()}
# "all": the CPU runner fix also applies to vLLM's own pruners (EVS), which fail on the CPU
# build without it; unset: only to stc's model.
CPU_FIX_ENV = "STC_VLLM_CPU_PRUNING_FIX"


def hf_overrides(retention: float, *, model_type: str = "qwen2_5_vl", **options) -> dict:
    """The ``hf_overrides`` that select stc's model for a checkpoint of ``model_type``
    (`ARCHITECTURES`: qwen2_5_vl, qwen3_vl, qwen3_vl_moe) with these stage-1 options.

    options: tau, cluster_ratio, knn_k (checked now, with `STCConfig`'s messages).
    """
    if model_type not in ARCHITECTURES:
        raise ValueError(f"stc's vLLM plugin serves model_type {', '.join(ARCHITECTURES)}; got {model_type!r}")
    unknown = set(options) - {"tau", "cluster_ratio", "knn_k"}
    if unknown:
        raise ValueError(f"unknown stc option(s) {sorted(unknown)}; known: tau, cluster_ratio, knn_k")
    keys = {field: key for key, field in OVERRIDE_KEYS.items()}
    out = {keys["retention"]: retention, **{keys[name]: value for name, value in options.items()}}
    options_from_config(SimpleNamespace(**out))  # fails now, as the engine would at start-up
    return {"architectures": [ARCHITECTURES[model_type]], **out}


def register() -> None:
    """vLLM general plugin: register stc's model classes (each imported only by engines that
    select it), check the configuration of engines that select one as their config is built,
    and, on the CPU build, patch the CPU runner as described above. Idempotent."""
    from vllm import ModelRegistry

    for architecture, path in _CLASS_PATHS.items():
        if architecture not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(architecture, path)
    _check_at_config_time()
    _patch_cpu_runner()


class ConfigError(RuntimeError):
    """stc refused an engine's configuration (raised in the main process, before any worker).
    Not a ValueError, so that vLLM's pydantic config does not wrap it: the last line of the
    traceback is stc's message."""


def _check_at_config_time() -> None:
    """Check stc's options where vLLM resolves the architecture of a model config: in the main
    process, seconds after start, before workers or weights (otherwise a bad ``stc_retention``
    surfaces ~50 s later as a worker traceback, and another checkpoint as vLLM's TypeError
    about config classes). Only configs that select one of stc's classes are looked at."""
    from vllm.model_executor.models.registry import _ModelRegistry

    if getattr(_ModelRegistry.inspect_model_cls, "_stc_patched", False):
        return
    inspect = _ModelRegistry.inspect_model_cls

    def patched(self, architectures, model_config, *args, **kwargs):
        names = [architectures] if isinstance(architectures, str) else list(architectures or [])
        hf_config = getattr(model_config, "hf_config", None)
        selected = [name for name in names if name in _CLASS_PATHS]
        if selected and hf_config is not None:
            try:
                check_config(hf_config, selected[0])
            except (ValueError, NotImplementedError) as exc:
                raise ConfigError(f"stc refused this engine: {exc}") from None
        return inspect(self, architectures, model_config, *args, **kwargs)

    patched._stc_patched = True
    patched.__doc__ = inspect.__doc__
    _ModelRegistry.inspect_model_cls = patched


def _is_stc_model(model) -> bool:
    path = _CLASS_PATHS.get(type(model).__name__)
    return path is not None and path.split(":")[0] == type(model).__module__


def _patch_cpu_runner() -> None:
    """vLLM 0.32's ``CPUModelRunner.load_model`` overrides the GPU runner's and never sets
    ``is_multimodal_pruning_enabled``, so pruned media never get their positions recomputed
    (generation then fails on the 4 extra position channels). Set it after loading, as the GPU
    runner does. Only on the CPU platform, once per process."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.models.interfaces import supports_multimodal_pruning
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    if getattr(CPUModelRunner.load_model, "_stc_patched", False):
        return
    load_model = CPUModelRunner.load_model

    def patched(self, *args, **kwargs):
        load_model(self, *args, **kwargs)
        model = self.get_model()
        mm_config = self.model_config.multimodal_config
        pruning = (
            supports_multimodal_pruning(model) and mm_config is not None and mm_config.is_multimodal_pruning_enabled()
        )
        if pruning and (_is_stc_model(model) or os.environ.get(CPU_FIX_ENV) == "all"):
            self.is_multimodal_pruning_enabled = True

    patched._stc_patched = True
    patched.__doc__ = load_model.__doc__
    CPUModelRunner.load_model = patched
