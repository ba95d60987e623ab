"""Processors for real checkpoints: the checkpoint's own first, a pure-torch stand-in otherwise.

In transformers 5.x every video processor derives from `BaseVideoProcessor`, which needs
torchvision, and a torchvision built for another torch fails on import (PyPI's torchvision beside
the CPU build of torch, for one). Where torchvision works, `load_processor` returns exactly what
`AutoProcessor.from_pretrained` returns. Where it does not, the checkpoint's processor is built
from its own files (tokenizer, chat template, image processor, preprocessing config) with a
pure-torch video processor in place of the torchvision one, and one warning says so. The
stand-ins reproduce the real classes' outputs: shapes, grids, patch order, resizing (torch's own
kernels, as torchvision uses them) and normalisation; tests/test_processors.py finds them equal on
real clips where torchvision imports.

Nothing here patches transformers: a processor class accepts a stand-in through a same-named
subclass (`accepting_stand_ins`), made once per class and used only for the processor built here.
"""

from __future__ import annotations

import json
import logging
import math
import os
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
    infer_channel_dimension_format,
)

# The PIL module of Qwen2-VL's image processor holds the same smart_resize as the video
# processor's module, without importing torchvision.
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as smart_resize_video
from transformers.processing_utils import VideosKwargs
from transformers.utils import is_torchvision_available
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import is_valid_video, make_batched_metadata, make_batched_videos

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


_INTERPOLATION = {
    PILImageResampling.NEAREST: "nearest-exact",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
    # No pure-torch Lanczos/box/hamming: the closest antialiased kernels (torchvision itself
    # falls back from Lanczos to bicubic off CPU).
    PILImageResampling.LANCZOS: "bicubic",
    PILImageResampling.BOX: "bilinear",
    PILImageResampling.HAMMING: "bilinear",
}


class TorchVideoProcessor(VideoProcessorMixin):
    """The parts of `BaseVideoProcessor` + `TorchvisionBackend` a video processor uses, in torch.

    Takes already-decoded frames only (stc decodes and samples with `stc.video.load_video`):
    a [T, H, W, C] or [T, C, H, W] uint8 array/tensor, a list of such, or a list of frames.
    """

    # The transformers class this stands in for: what a saved checkpoint records, so a folder
    # saved where torchvision does not import loads with the real class where it does.
    stands_in_for = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["video_processor_type"] = self.stands_in_for
        return out

    @property
    def backend(self) -> str:
        return "torch"

    def _decode_and_sample_videos(self, videos, video_metadata, do_sample_frames=None, sample_indices_fn=None):
        videos = make_batched_videos(videos)
        if not all(is_valid_video(v) for v in videos):
            raise ValueError(
                f"{type(self).__name__} takes decoded frames ([T, H, W, 3] arrays); decode files "
                "with stc.video.load_video(path).frames"
            )
        if do_sample_frames:
            raise ValueError(
                f"{type(self).__name__} does not sample frames; sample them with "
                "stc.video.load_video(path, num_frames=...) and pass do_sample_frames=False"
            )
        return videos, make_batched_metadata(videos, video_metadata=video_metadata)

    def _prepare_input_videos(self, videos, do_convert_rgb=None, input_data_format=None, device=None):
        out = []
        for video in videos:
            if isinstance(video, np.ndarray):
                video = torch.from_numpy(np.ascontiguousarray(video))
            fmt = input_data_format or infer_channel_dimension_format(video)
            if fmt == ChannelDimension.LAST:
                video = video.permute(0, 3, 1, 2)
            if do_convert_rgb:
                video = self.convert_to_rgb(video)
            if device is not None:
                video = video.to(device)
            out.append(video.contiguous())
        return out

    def convert_to_rgb(self, video: torch.Tensor) -> torch.Tensor:
        """[T, C, H, W] -> [T, 3, H, W]: grey repeated, alpha dropped (the real one blends it on white)."""
        if video.shape[1] == 1:
            return video.expand(-1, 3, -1, -1)
        if video.shape[1] == 4:
            return video[:, :3]
        return video

    def resize(self, video: torch.Tensor, size: SizeDict, resample=None, **kwargs) -> torch.Tensor:
        """Antialiased resize of [T, C, H, W] to size.height x size.width, dtype preserved.

        The same kernels as torchvision's tensor resize: uint8 is resized natively where torch
        has a uint8 kernel (bicubic on CPU; bilinear on AVX2/AVX512 CPUs), otherwise in float32,
        clamped and rounded back to uint8.
        """
        mode = _INTERPOLATION.get(PILImageResampling(resample) if resample is not None else None, "bilinear")
        extra = {} if mode == "nearest-exact" else {"antialias": True, "align_corners": False}
        target = (size.height, size.width)
        if tuple(video.shape[-2:]) == target:
            return video
        native = video.dtype != torch.uint8 or mode == "nearest-exact" or (video.device.type == "cpu" and (
            mode == "bicubic" or (mode == "bilinear" and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))))
        if native:
            return F.interpolate(video, size=target, mode=mode, **extra)
        out = F.interpolate(video.float(), size=target, mode=mode, **extra)
        return out.clamp_(0, 255).round_().to(torch.uint8)

    def rescale_and_normalize(self, video, do_rescale, rescale_factor, do_normalize, image_mean, image_std):
        """(x * rescale_factor - mean) / std in float32, per channel of [..., C, H, W]."""
        video = video.to(torch.float32)
        if do_rescale:
            video = video * rescale_factor
        if do_normalize:
            mean = torch.as_tensor(image_mean, dtype=torch.float32, device=video.device).view(-1, 1, 1)
            std = torch.as_tensor(image_std, dtype=torch.float32, device=video.device).view(-1, 1, 1)
            video = (video - mean) / std
        return video


class TorchLlavaOnevisionVideoProcessor(TorchVideoProcessor):
    """Stand-in for `LlavaOnevisionVideoProcessor`: each frame -> 3x384x384, normalised.

    Output `pixel_values_videos`: [num_videos, T, 3, 384, 384] float32 (with return_tensors="pt").
    """

    stands_in_for = "LlavaOnevisionVideoProcessor"

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 384, "width": 384}
    rescale_factor = 1 / 255
    default_to_square = False
    crop_size = None
    do_resize = True
    do_center_crop = None
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = False

    def _preprocess(
        self,
        videos,
        do_resize,
        size,
        resample,
        do_rescale,
        rescale_factor,
        do_normalize,
        image_mean,
        image_std,
        return_tensors=None,
        **kwargs,
    ):
        processed = []
        for video in videos:
            if do_resize:
                video = self.resize(video, size=size, resample=resample)
            processed.append(
                self.rescale_and_normalize(video, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            )
        return BatchFeature(data={"pixel_values_videos": processed}, tensor_type=return_tensors)


class _Qwen2VLVideoKwargs(VideosKwargs, total=False):
    # The extra keys the real Qwen2VLVideoProcessor accepts (its TypedDict lives in a module
    # that imports torchvision, so it is restated here).
    min_pixels: int
    max_pixels: int
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    min_frames: int
    max_frames: int
    cap_pixels_per_frame: bool
    max_video_tokens: int


class TorchQwen2VLVideoProcessor(TorchVideoProcessor):
    """Stand-in for `Qwen2VLVideoProcessor` (used by Qwen2-VL and Qwen2.5-VL).

    Frames are resized to multiples of patch_size x merge_size (28) keeping the aspect ratio
    within [min, max] pixels, the frame count is padded to a multiple of temporal_patch_size
    by repeating the last frame, and each video is cut into flat patches.

    Output: `pixel_values_videos` [sum_v t_v*h_v*w_v, 3*2*14*14] float32 and `video_grid_thw`
    [num_videos, 3] = (T/2, H/14, W/14); a video yields t*h*w/4 placeholder tokens.
    """

    stands_in_for = "Qwen2VLVideoProcessor"
    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    patch_size = 14
    temporal_patch_size = 2
    merge_size = 2
    min_frames = 4
    max_frames = 768
    do_sample_frames = False
    # The real class warns when this is unset and then behaves as False; say False outright.
    cap_pixels_per_frame = False
    max_video_tokens = 128000
    valid_kwargs = _Qwen2VLVideoKwargs
    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, **kwargs):
        size = kwargs.pop("size", None)
        size = dict(self.size) if size is None else dict(size)
        if (min_pixels := kwargs.pop("min_pixels", None)) is not None:
            size["shortest_edge"] = min_pixels
        if (max_pixels := kwargs.pop("max_pixels", None)) is not None:
            size["longest_edge"] = max_pixels
        super().__init__(size=size, **kwargs)

    def _standardize_kwargs(self, size=None, min_pixels=None, max_pixels=None, **kwargs):
        if min_pixels is not None or max_pixels is not None:
            size = dict(size) if size is not None else {}
            if min_pixels is not None:
                size["shortest_edge"] = min_pixels
            if max_pixels is not None:
                size["longest_edge"] = max_pixels
        return super()._standardize_kwargs(size=size, **kwargs)

    def _resized_hw(self, num_frames, height, width, size, patch_size, merge_size, temporal_patch_size,
                    cap_pixels_per_frame):
        factor = patch_size * merge_size
        max_pixels = size.longest_edge
        if cap_pixels_per_frame:
            total_pixels = int(self.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(
                min(max_pixels, total_pixels * temporal_patch_size // num_frames), int(size.shortest_edge * 1.05)
            )
        return smart_resize(height, width, factor=factor, min_pixels=size.shortest_edge, max_pixels=max_pixels)

    def _preprocess(
        self,
        videos,
        do_resize,
        size,
        resample,
        do_rescale,
        rescale_factor,
        do_normalize,
        image_mean,
        image_std,
        patch_size=None,
        temporal_patch_size=None,
        merge_size=None,
        cap_pixels_per_frame=None,
        return_tensors=None,
        **kwargs,
    ):
        patches_all, grids = [], []
        for video in videos:
            t, c, h, w = video.shape
            if do_resize:
                rh, rw = self._resized_hw(
                    t, h, w, size, patch_size, merge_size, temporal_patch_size, cap_pixels_per_frame
                )
                video = self.resize(video, size=SizeDict(height=rh, width=rw), resample=resample)
            video = self.rescale_and_normalize(video, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            if pad := -t % temporal_patch_size:
                video = torch.cat([video, video[-1:].expand(pad, -1, -1, -1)], dim=0)
            t, c, h, w = video.shape
            gt, gh, gw = t // temporal_patch_size, h // patch_size, w // patch_size
            # Same flat order as the real patchify: temporal patch, then merge-window-major
            # spatial order, each patch flattened as (C, temporal, py, px).
            patches = video.reshape(
                gt, temporal_patch_size, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size,
                patch_size,
            )
            patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
            patches_all.append(patches.reshape(gt * gh * gw, c * temporal_patch_size * patch_size * patch_size))
            grids.append([gt, gh, gw])
        return BatchFeature(
            data={"pixel_values_videos": torch.cat(patches_all, dim=0), "video_grid_thw": torch.tensor(grids)},
            tensor_type=return_tensors,
        )

    def get_num_of_video_patches(self, num_frames: int, height: int, width: int, videos_kwargs=None) -> int:
        """Number of (unmerged) patches a [num_frames, height, width] video becomes."""
        kw = videos_kwargs or {}
        patch_size = kw.get("patch_size") or self.patch_size
        merge_size = kw.get("merge_size") or self.merge_size
        temporal = kw.get("temporal_patch_size") or self.temporal_patch_size
        size = SizeDict(**(kw.get("size") or self.size))
        rh, rw = self._resized_hw(num_frames, height, width, size, patch_size, merge_size, temporal,
                                  kw.get("cap_pixels_per_frame", self.cap_pixels_per_frame))
        return math.ceil(num_frames / temporal) * (rh // patch_size) * (rw // patch_size)


class TorchQwen3VLVideoProcessor(TorchQwen2VLVideoProcessor):
    """Stand-in for `Qwen3VLVideoProcessor`: the Qwen2-VL layout with 16-pixel patches, mean/std
    0.5 and Qwen3-VL's sizing (the whole video's T x H x W pixels against one budget; the
    per-frame cap as the real class computes it). Grid (T/2, H/16, W/16)."""

    stands_in_for = "Qwen3VLVideoProcessor"
    size = {"shortest_edge": 128 * 32 * 32, "longest_edge": 32 * 32 * 768}
    image_mean, image_std = IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
    patch_size, max_video_tokens = 16, 768

    def _resized_hw(self, num_frames, height, width, size, patch_size, merge_size, temporal_patch_size,
                    cap_pixels_per_frame):
        factor, max_pixels = patch_size * merge_size, size.longest_edge
        if cap_pixels_per_frame:  # per frame: min(max_video_tokens units, an even share), >= 1.05 x the least
            max_pixels = num_frames * max(min(self.max_video_tokens * factor * factor, max_pixels // num_frames),
                                          int(size.shortest_edge * 1.05))
        return smart_resize_video(num_frames, height, width, temporal_factor=temporal_patch_size, factor=factor,
                                  min_pixels=size.shortest_edge, max_pixels=max_pixels)


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
