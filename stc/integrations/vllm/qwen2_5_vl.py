"""stc's variant of vLLM's Qwen2.5-VL: stage 1 through vLLM's own video-pruning path.

Nothing of vLLM's forward is copied. Three small overrides of its Qwen2.5-VL classes:
- the processor fixes each video's placeholder count at stc's exact budget
  (``video_budget``: round_half_up(retention * T * N));
- the vision tower runs as it is, with a forward pre-hook on the last full-attention block's
  attention op that reads q/k (rotary applied) and yields stc's contribution scores (the mean
  attention each patch receives within its temporal patch; heads and queries averaged, then
  the mean over each merged 2x2 unit, in feature order), as the transformers adapter scores;
- ``_postprocess_video_embeds_evs`` (the hook vLLM gives pruning models) runs
  `stc.compress_tokens` on the features and appends the kept tokens' stock mRoPE positions,
  which vLLM's ``recompute_mrope_positions`` then writes into the request's positions;
- ``get_mrope_input_positions`` (the positions a request starts with, before any encoder runs)
  counts each video as its budget of placeholders and starts the text after it where stc's
  recomputed positions put it. vLLM recomputes positions only for media in the tokens being
  computed now: on a prefix-cache hit that covers a whole video, the text after it keeps these
  start positions, and vLLM's own (sized for the unpruned video) put it at the wrong place;
- images keep their stock positions: the text after an image resumes at max(h, w) (the pruning
  path's image hook says w).

Importing this module imports vLLM; `stc.integrations.vllm.register` registers the class
lazily, so only engines that select it import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from vllm.distributed import get_tensor_model_parallel_world_size, tensor_model_parallel_all_reduce
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from .stage1 import (
    SUPPORTED_MODEL_TYPES,
    check_supported,
    compress_video,
    merge_unit_scores,
    options_from_config,
    received_by_segment,
    start_positions,
    video_budget,
)

__all__ = ["SUPPORTED_MODEL_TYPES", "STCQwen2_5_VLForConditionalGeneration", "STCQwen2_5_VLMultiModalProcessor",
           "check_supported"]

class STCQwen2_5_VLMultiModalProcessor(Qwen2_5_VLMultiModalProcessor):
    """Qwen2.5-VL's processor with each video's placeholders set to stc's budget."""

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs):
        hf_config = self.info.get_hf_config()
        check_supported(hf_config)
        retention = options_from_config(hf_config).retention
        merge = hf_config.vision_config.spatial_merge_size
        video_token = self.info.get_tokenizer().get_vocab()[self.info.get_hf_processor(**hf_processor_mm_kwargs).video_token]

        def video_replacement(item_idx: int) -> list[int]:
            grid_thw = out_mm_kwargs["video"][item_idx]["video_grid_thw"].data
            return [video_token] * video_budget(grid_thw, merge, retention)

        updates = [u for u in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
                   if u.modality != "video"]
        return [*updates, PromptReplacement(modality="video", target=[video_token], replacement=video_replacement)]


class _ReceivedAttention:
    """Forward pre-hook on a vision attention op (vLLM's ``MMEncoderAttention``): collects the
    attention each token receives, per call, over all heads (summed across tensor-parallel
    ranks, which hold disjoint heads)."""

    def __init__(self, op: torch.nn.Module):
        self.op = op
        self.received: list[torch.Tensor] = []

    def _hook(self, module, args, kwargs):
        q, k = kwargs["query"], kwargs["key"]  # [1, L, H_local, dh], rotary applied
        scores = received_by_segment(q[0], k[0], kwargs["cu_seqlens"], module.scale)  # mean over local heads
        tp = get_tensor_model_parallel_world_size()
        if tp > 1:
            scores = tensor_model_parallel_all_reduce(scores) / tp
        self.received.append(scores)

    def __enter__(self) -> _ReceivedAttention:
        self._handle = self.op.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


@MULTIMODAL_REGISTRY.register_processor(
    STCQwen2_5_VLMultiModalProcessor, info=Qwen2_5_VLProcessingInfo, dummy_inputs=Qwen2_5_VLDummyInputsBuilder
)
class STCQwen2_5_VLForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL with stc's stage 1 on every video (selected by ``hf_overrides``)."""

    def __init__(self, *, vllm_config, prefix: str = ""):
        hf_config = vllm_config.model_config.hf_config
        check_supported(hf_config)
        options = options_from_config(hf_config)
        mm_config = vllm_config.model_config.get_multimodal_config()
        if mm_config.video_pruning_rate:
            raise ValueError(
                "stc and --video-pruning-rate both prune videos: serve stc with hf_overrides "
                "(stc_retention) and EVS with --video-pruning-rate, not both on one engine"
            )
        # vLLM's runners recompute mRoPE positions for pruned media only when the multimodal
        # config says video pruning is on: say so (EVS never runs here, its hook is replaced).
        # Any rate in (0, 1) turns it on; the rate itself is never read by stc's path.
        mm_config.video_pruning_rate = min(max(1.0 - options.retention, 1e-6), 0.999999)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.stc_options = options
        self.is_multimodal_pruning_enabled = True
        if self.use_data_parallel:
            raise NotImplementedError(
                "stc's scores hook the vision tower, which mm_encoder_tp_mode='data' shards by item; "
                "use the default mm_encoder_tp_mode (tensor parallel and --data-parallel-size work)"
            )
        self._stc_scores: list[torch.Tensor] | None = None

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        """[3, len(input_tokens)] start positions and the decode offset (module docstring).

        A video's placeholders get its first ``length`` stock grid positions until its encoder
        output replaces them; the text after it starts at the full grid's largest position + 1
        either way, so a prefix-cache hit that skips the encoder leaves every later position
        right."""
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        spans = [(f.mm_position.offset, f.mm_position.length, (t, h, w), t_factor)
                 for f, (_, t, h, w, t_factor) in zip(features, self.iter_mm_grid_thw(features))]
        positions = start_positions(len(input_tokens), spans)
        return torch.from_numpy(positions), int(positions.max()) + 1 - len(input_tokens)

    def _postprocess_image_embeds_evs(self, image_embeds_split, image_input) -> tuple[torch.Tensor, ...]:
        # vLLM's hook sets the text offset channel to the grid width; stock Qwen2.5-VL (and
        # `get_mrope_input_positions` above) resume after an image at max(h, w).
        out = super()._postprocess_image_embeds_evs(image_embeds_split, image_input)
        for emb in out:
            emb[:, -1] = emb[:, -3:-1].amax() + 1
        return out

    def _score_op(self) -> torch.nn.Module:
        """The attention op of the last full-attention vision block."""
        return self.visual.blocks[self.visual.fullatt_block_indexes[-1]].attn.attn

    def _process_video_input(self, video_input) -> tuple[torch.Tensor, ...]:
        if video_input["type"] != "pixel_values_videos":
            raise ValueError("stc scores videos in the vision tower: send pixels, not precomputed video_embeds")
        grid_thw = video_input["video_grid_thw"].tolist()
        with _ReceivedAttention(self._score_op()) as hook:
            embeds = super()._process_video_input(video_input)
        (received,) = hook.received
        unit = self.visual.spatial_merge_unit
        windows, offset = [], 0
        for t, h, w in grid_thw:
            windows.append(self.visual.get_window_index_thw(t, h, w)[0] + offset)
            offset += t * h * w // unit
        scores = merge_unit_scores(received, unit, torch.cat(windows))
        self._stc_scores = list(scores.split([e.shape[0] for e in embeds]))
        return embeds

    def _postprocess_video_embeds_evs(
        self, video_embeds_split: Sequence[torch.Tensor], video_input
    ) -> tuple[torch.Tensor, ...]:
        scores, self._stc_scores = self._stc_scores, None
        assert scores is not None and len(scores) == len(video_embeds_split), "scores come from _process_video_input"
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
