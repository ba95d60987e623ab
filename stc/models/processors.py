"""Processors for real checkpoints: the checkpoint's own first, a pure-torch stand-in otherwise.

In transformers 5.x every video processor derives from `BaseVideoProcessor`, which needs
torchvision, and a torchvision built for another torch fails on import (PyPI's torchvision beside
the CPU build of torch, for one). Where torchvision works, `load_processor` returns exactly what
`AutoProcessor.from_pretrained` returns. Where it does not, the checkpoint's processor is built
from its own files (tokenizer, chat template, image processor, preprocessing config) with a
pure-torch video processor in place of the torchvision one, and one warning says so. The
stand-ins reproduce the real classes' outputs: shapes, grids, patch order, resizing (torch's own
kernels, as torchvision uses them) and normalisation; tests/test_processors.py finds them equal on
real clips where torchvision imports. The stand-ins themselves are `stc.models.torch_video`; this
module chooses and builds.

Nothing here patches transformers: a processor class accepts a stand-in through a same-named
subclass (`accepting_stand_ins`), made once per class and used only for the processor built here.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache

import transformers
from transformers.utils import is_torchvision_available

from .torch_video import (
    TorchLlavaOnevisionVideoProcessor,
    TorchQwen2VLVideoProcessor,
    TorchQwen3VLVideoProcessor,
    TorchVideoProcessor,
)

__all__ = [
    "TorchLlavaOnevisionVideoProcessor",
    "TorchQwen2VLVideoProcessor",
    "TorchQwen3VLVideoProcessor",
    "TorchVideoProcessor",
    "accepting_stand_ins",
    "image_processor",
    "load_processor",
    "torchvision_works",
    "video_processor",
]

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def torchvision_works() -> bool:
    """Whether transformers' torchvision-backed processors can be used in this process."""
    if not is_torchvision_available():
        return False
    try:  # a torchvision built for another torch is "available" but fails on import
        import torchvision.transforms.v2.functional  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means: not usable
        return False
    return True


_STAND_INS = {"llava_onevision": TorchLlavaOnevisionVideoProcessor, "qwen2_vl": TorchQwen2VLVideoProcessor,
              "qwen3_vl": TorchQwen3VLVideoProcessor}
_IMAGE = {  # kind -> (torchvision backend, PIL backend)
    "llava_onevision": ("LlavaOnevisionImageProcessor", "LlavaOnevisionImageProcessorPil"),
    "qwen2_vl": ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil"),
    "qwen3_vl": ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil"),  # Qwen3-VL's images: Qwen2-VL's, patch 16
}


def _check_kind(kind: str) -> str:
    if kind not in _STAND_INS:
        raise ValueError(f"unknown video processor kind {kind!r}; known: {', '.join(_STAND_INS)}")
    return kind


def video_processor(kind: str, **kwargs):
    """A video processor for ``kind`` in {"llava_onevision", "qwen2_vl", "qwen3_vl"}.

    The real transformers class when torchvision works, else the pure-torch stand-in. kwargs
    override class defaults (e.g. image_mean for SigLIP checkpoints).
    """
    if torchvision_works():
        return getattr(transformers, _STAND_INS[_check_kind(kind)].stands_in_for)(**kwargs)
    return _STAND_INS[_check_kind(kind)](**kwargs)


def image_processor(kind: str, **kwargs):
    """The image processor for ``kind``: the torchvision backend when it works, else the PIL one
    (both are transformers' own; AutoImageProcessor makes the same choice)."""
    real, pil = _IMAGE[_check_kind(kind)]
    return getattr(transformers, real if torchvision_works() else pil)(**kwargs)


def _stand_in_from(source: str, processor_dict: dict | None, kind: str, **hub_kwargs) -> TorchVideoProcessor:
    """The stand-in for ``kind``, configured as the checkpoint configures its video processor:
    processor_config.json's "video_processor" entry (transformers 5.x saves), else
    video_preprocessor_config.json, else preprocessor_config.json."""
    cfg = (processor_dict or {}).get("video_processor")
    if not isinstance(cfg, dict):
        cfg = _preprocessing_config(source, **hub_kwargs)
    return _STAND_INS[_check_kind(kind)](**{k: v for k, v in cfg.items() if k in _VIDEO_KEYS})


@lru_cache(maxsize=None)
def accepting_stand_ins(processor_cls: type, kind: str) -> type:
    """A subclass of ``processor_cls`` (same name) that takes the pure-torch stand-in for
    ``kind`` as its video processor, both when constructed and in ``from_pretrained``.

    `ProcessorMixin.__init__` checks each part against a base class looked up by name on the
    `transformers` module, and without torchvision `transformers` does not export the video
    processors' base, so the check refuses even a true `VideoProcessorMixin`; and
    `from_pretrained` loads the video processor through `AutoVideoProcessor`, which needs
    torchvision. The subclass widens the check and loads the stand-in for its own instances
    only; everything else (tokenizer, image processor, chat template, the processor's own
    settings) comes from the checkpoint through transformers' code. Neither ``processor_cls``
    nor any other class is modified.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if isinstance(argument, TorchVideoProcessor):
            return type(argument)
        return super(subclass, self).check_argument_for_proper_class(argument_name, argument)

    def _get_arguments_from_pretrained(cls, source, processor_dict=None, **kwargs):
        from transformers import AutoImageProcessor, AutoTokenizer

        kwargs.pop("subfolder", None)
        loaders = {
            "tokenizer": lambda: AutoTokenizer.from_pretrained(source, **kwargs),
            "image_processor": lambda: AutoImageProcessor.from_pretrained(source, **kwargs),
            "video_processor": lambda: _stand_in_from(source, processor_dict, kind, **_hub_only(kwargs)),
        }
        attributes = cls.get_attributes()
        if unknown := [a for a in attributes if a not in loaders]:
            raise NotImplementedError(f"{processor_cls.__name__} has parts stc cannot build without torchvision: {unknown}")
        return [loaders[a]() for a in attributes]

    subclass = type(processor_cls.__name__, (processor_cls,), {
        "check_argument_for_proper_class": check_argument_for_proper_class,
        "_get_arguments_from_pretrained": classmethod(_get_arguments_from_pretrained),
        "__module__": __name__,
        "__doc__": f"{processor_cls.__name__} with stc's pure-torch video processor (no torchvision).",
    })
    return subclass


def _hub_only(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k in ("revision", "token", "cache_dir", "local_files_only")}


def build_processor(processor_cls: type, *, video_processor, **parts):
    """``processor_cls(video_processor=..., **parts)``, accepting a stand-in video processor."""
    if isinstance(video_processor, TorchVideoProcessor):
        kind = next(k for k, c in _STAND_INS.items() if isinstance(video_processor, c))
        processor_cls = accepting_stand_ins(processor_cls, kind)
    return processor_cls(video_processor=video_processor, **parts)


# The keys of a checkpoint's video preprocessing config that the stand-ins take.
_VIDEO_KEYS = ("image_mean", "image_std", "size", "patch_size", "temporal_patch_size", "merge_size",
               "min_pixels", "max_pixels", "resample", "rescale_factor", "do_rescale", "do_normalize",
               "do_resize", "do_convert_rgb", "do_sample_frames")
_warned: set[str] = set()


def _preprocessing_config(source: str, **hub_kwargs) -> dict:
    """The checkpoint's video (else image) preprocessing config as plain JSON, or {}."""
    from transformers.utils import cached_file

    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        try:
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub_kwargs)
        except OSError:
            path = None
        if path and os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
    return {}


def load_processor(source: str, *, processor_class: str, video_kind: str, **hub_kwargs):
    """The processor of checkpoint ``source`` (hub id or local folder).

    With torchvision: ``AutoProcessor.from_pretrained(source, **hub_kwargs)``, the checkpoint's
    own. Without: ``transformers.<processor_class>.from_pretrained`` with the stand-in for
    ``video_kind`` as its video processor (everything else is the checkpoint's, loaded by
    transformers), and a warning naming what was replaced, once per class.
    ``hub_kwargs``: revision, token, cache_dir, local_files_only.
    """
    if torchvision_works():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source, **hub_kwargs)
    if processor_class not in _warned:
        _warned.add(processor_class)
        log.warning(
            "torchvision is not usable here: %s's video processor (%s) is replaced by stc's pure-torch %s "
            "(the same outputs)",
            processor_class, _STAND_INS[_check_kind(video_kind)].stands_in_for, _STAND_INS[video_kind].__name__,
        )
    return accepting_stand_ins(getattr(transformers, processor_class), video_kind).from_pretrained(source, **hub_kwargs)
