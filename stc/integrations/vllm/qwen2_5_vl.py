"""stc's variant of vLLM's Qwen2.5-VL: stage 1 through vLLM's own video-pruning path.

Nothing of vLLM's forward is copied. Small overrides of its Qwen2.5-VL classes, the shared part
in `model.STCVideoModel` (checks, score hook, start positions):
- the processor fixes each video's placeholder count at stc's exact budget
  (``video_budget``: round_half_up(retention * T * N));
- the vision tower runs as it is; the score hook sits on the last full-attention block's
  attention op, and scores come back from the window order to feature order, as the
  transformers adapter scores;
- ``_postprocess_video_embeds_evs`` (the hook vLLM gives pruning models) runs
  `stc.compress_tokens` on the features and appends the kept tokens' stock mRoPE positions,
  which vLLM's ``recompute_mrope_positions`` then writes into the request's positions;
- ``get_mrope_input_positions`` (shared) starts the text after a video where stc's recomputed
  positions put it, so a prefix-cache hit that skips the encoder leaves it right;
- images keep their stock positions: the text after an image resumes at max(h, w) (the pruning
  path's image hook says w).

Importing this module imports vLLM; `stc.integrations.vllm.register` registers the class
lazily, so only engines that select it import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from .model import STCVideoModel
from .stage1 import SUPPORTED_MODEL_TYPES, check_supported, compress_video, options_from_config, video_budget

__all__ = ["SUPPORTED_MODEL_TYPES", "STCQwen2_5_VLForConditionalGeneration", "STCQwen2_5_VLMultiModalProcessor",
           "check_supported"]

class STCQwen2_5_VLMultiModalProcessor(Qwen2_5_VLMultiModalProcessor):
    """Qwen2.5-VL's processor with each video's placeholders set to stc's budget."""

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs):
        hf_config = self.info.get_hf_config()
        check_supported(hf_config, STCQwen2_5_VLForConditionalGeneration.stc_architecture())
        retention = options_from_config(hf_config).retention
        merge = hf_config.vision_config.spatial_merge_size
        video_token = self.info.get_tokenizer().get_vocab()[self.info.get_hf_processor(**hf_processor_mm_kwargs).video_token]

        def video_replacement(item_idx: int) -> list[int]:
            grid_thw = out_mm_kwargs["video"][item_idx]["video_grid_thw"].data
            return [video_token] * video_budget(grid_thw, merge, retention)

        updates = [u for u in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
                   if u.modality != "video"]
        return [*updates, PromptReplacement(modality="video", target=[video_token], replacement=video_replacement)]


@MULTIMODAL_REGISTRY.register_processor(
    STCQwen2_5_VLMultiModalProcessor, info=Qwen2_5_VLProcessingInfo, dummy_inputs=Qwen2_5_VLDummyInputsBuilder
)
class STCQwen2_5_VLForConditionalGeneration(STCVideoModel, Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL with stc's stage 1 on every video (selected by ``hf_overrides``)."""

    stc_model_type = "qwen2_5_vl"

    def __init__(self, *, vllm_config, prefix: str = ""):
        options = self._stc_before_init(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._stc_after_init(options)

    def _postprocess_image_embeds_evs(self, image_embeds_split, image_input) -> tuple[torch.Tensor, ...]:
        # vLLM's hook sets the text offset channel to the grid width; stock Qwen2.5-VL (and the
        # start positions) resume after an image at max(h, w).
        out = super()._postprocess_image_embeds_evs(image_embeds_split, image_input)
        for emb in out:
            emb[:, -1] = emb[:, -3:-1].amax() + 1
        return out

    def _stc_score_op(self) -> torch.nn.Module:
        """The attention op of the last full-attention vision block."""
        return self.visual.blocks[self.visual.fullatt_block_indexes[-1]].attn.attn

    def _stc_merged_order(self, grid_thw: list[list[int]]) -> torch.Tensor:
        """The window permutation the tower applies to merged tokens before its blocks."""
        windows, offset = [], 0
        for t, h, w in grid_thw:
            windows.append(self.visual.get_window_index_thw(t, h, w)[0] + offset)
            offset += t * h * w // self.visual.spatial_merge_unit
        return torch.cat(windows)

    def _stc_full_placeholder(self, placeholder: list[int], grid_thw: list[int]) -> list[int]:
        t, h, w = grid_thw
        return [self.config.video_token_id] * (t * h * w // self.visual.spatial_merge_unit)

    def _postprocess_video_embeds_evs(
        self, video_embeds_split: Sequence[torch.Tensor], video_input
    ) -> tuple[torch.Tensor, ...]:
        scores = self._stc_take_scores(len(video_embeds_split))
        grid_thw = video_input["video_grid_thw"].tolist()
        seconds = video_input.get("second_per_grid_ts")
        tokens_per_second = getattr(self.config.vision_config, "tokens_per_second", 1.0)
        merge = self.visual.spatial_merge_size
        out = []
        for i, (emb, score, grid) in enumerate(zip(video_embeds_split, scores, grid_thw)):
            # as vLLM's unpruned positions (iter_mm_grid_thw): seconds per temporal patch, 1.0 if absent
            t_factor = (float(seconds[i]) if seconds is not None else 1.0) * tokens_per_second
            kept, _ = compress_video(emb, score.to(emb.device), grid, merge, t_factor, self.stc_options)
            out.append(kept)
        return tuple(out)
