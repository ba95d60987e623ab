"""stc's pure-torch video processors: stand-ins for transformers' torchvision-backed ones
(LLaVA-OneVision's, Qwen2-VL's, Qwen3-VL's), for where torchvision does not import.

They reproduce the real classes' outputs: shapes, grids, patch order, resizing (torch's own
kernels, as torchvision uses them) and normalisation; tests/test_processors.py finds them equal
on real clips where torchvision imports. `stc.models.processors` chooses between them and the
real classes, and builds a checkpoint's processor around them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
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
from transformers.video_processing_utils import VideoProcessorMixin
from transformers.video_utils import is_valid_video, make_batched_metadata, make_batched_videos

__all__ = ["TorchLlavaOnevisionVideoProcessor", "TorchQwen2VLVideoProcessor", "TorchQwen3VLVideoProcessor",
           "TorchVideoProcessor"]


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
