"""stc's variant of vLLM's Qwen3-VL (dense): stage 1 through vLLM's own video-pruning path.

Nothing of vLLM's forward is copied; the shared part is `model.STCVideoModel` (checks, score
hook, start positions). What Qwen3-VL adds, and how this class meets it:

- **Layout.** vLLM writes each temporal patch of a video as ``<t seconds>`` text,
  ``<|vision_start|>``, its tokens, ``<|vision_end|>``, and fixes that text when it processes
  the prompt, before any encoder runs. A pruned video's placeholder therefore holds EVERY
  patch's timestamp and marker pair, with all the kept tokens counted in the first patch (vLLM's
  EVS does the same: how many tokens each patch keeps is known only after the encoder). The
  processor here sizes that placeholder at stc's budget; the encoder output
  (``_create_final_video_embeddings``, vLLM's) then lays the kept tokens out in their own
  patches. So in vLLM a temporal patch that keeps zero tokens keeps its timestamp text and its
  empty marker pair, at their stock positions; stc's transformers adapter drops them (its
  [choice], `stc.models.qwen3_vl`). The visual tokens, their positions and the text after the
  video are the same in both; vLLM's prompt carries ~8 more text tokens per empty patch.
- **Scores.** Every block of the tower attends a whole temporal patch (no windows), so the last
  block scores, merged units are consecutive patches, and features come in that order.
- **DeepStack.** The tower returns [tokens, D x (1 + levels)]: the LLM's features, then one
  slice per DeepStack level. Stage 1 decides on the first slice; every level gets the same
  tokens (`stc.models.qwen3_vl.deepstack_levels`: a selected token is that patch at every
  level, a refilled cluster the mean of the same members), and vLLM injects them as it does
  for its own pruning.
- **Positions.** The kept tokens keep their stock interleaved-mRoPE positions (vLLM's
  ``_get_expanded_positions`` indexes the unpruned prompt's positions with the kept mask); the
  text after the video starts where the unpruned prompt's does, both when the encoder runs and
  when a prefix-cache hit skips it (`model.STCVideoModel.get_mrope_input_positions`). The
  placeholder's positions are written by ``recompute_mrope_positions`` here, not vLLM's (two
  defects of vLLM 0.32 for this layout: see that method).

Qwen3-VL-MoE: vLLM's ``Qwen3VLMoeForConditionalGeneration`` is its Qwen3-VL class (the same
vision tower, DeepStack, processor, positions and pruning path) with a mixture-of-experts LLM, so
`STCQwen3VLMoeForConditionalGeneration` is `STCQwen3VLModel` on it, unchanged (in this module:
both classes need vLLM, and `stc.integrations.vllm` maps each family to its module).
Qwen3.5 is not served: the config check refuses it with a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from vllm.model_executor.models.qwen3_vl import (
    Qwen3VLDummyInputsBuilder,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMultiModalProcessor,
    Qwen3VLProcessingInfo,
)
from vllm.model_executor.models.qwen3_vl_moe import Qwen3VLMoeForConditionalGeneration, Qwen3VLMoeProcessingInfo
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.processing import PromptReplacement

from ...models.qwen3_vl import deepstack_levels
from .model import STCVideoModel
from .stage1 import ARCHITECTURES, check_supported, compress_features, options_from_config, video_budget

__all__ = ["STCQwen3VLForConditionalGeneration", "STCQwen3VLModel", "STCQwen3VLMoeForConditionalGeneration",
           "STCQwen3VLMoeMultiModalProcessor", "STCQwen3VLMultiModalProcessor"]


class STCQwen3VLMultiModalProcessor(Qwen3VLMultiModalProcessor):
    """Qwen3-VL's processor with each video's placeholder holding stc's budget of tokens (all
    counted in the first temporal patch, as vLLM's EVS counts them) and every patch's
    timestamp and markers. One subclass per family (``stc_model_type``: the checkpoint it
    serves)."""

    stc_model_type = "qwen3_vl"

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs: Mapping[str, Any], out_mm_kwargs):
        hf_config = self.info.get_hf_config()
        check_supported(hf_config, ARCHITECTURES[self.stc_model_type])
        retention = options_from_config(hf_config).retention
        merge = hf_config.vision_config.spatial_merge_size
        tokenizer = self.info.get_tokenizer()

        def video_replacement(item_idx: int):
            out_item = out_mm_kwargs["video"][item_idx]
            grid_thw = out_item["video_grid_thw"].data
            timestamps = out_item["timestamps"].data
            t = int(grid_thw[0])
            return Qwen3VLMultiModalProcessor.get_video_repl(
                tokens_per_frame=[video_budget(grid_thw, merge, retention)] + [0] * (t - 1),
                timestamps=timestamps,
                tokenizer=tokenizer,
                vision_start_token_id=hf_config.vision_start_token_id,
                vision_end_token_id=hf_config.vision_end_token_id,
                video_token_id=hf_config.video_token_id,
                select_token_id=False,  # the whole placeholder is encoder output (text included)
            )

        return [
            u if u.modality != "video" else PromptReplacement(modality="video", target=u.target,
                                                                replacement=video_replacement)
            for u in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        ]


class STCQwen3VLModel(STCVideoModel):
    """stc's stage 1 for a vLLM Qwen3-VL class (dense or MoE): put it before that class."""

    def __init__(self, *, vllm_config, prefix: str = ""):  # named: vLLM's loader checks for both
        options = self._stc_before_init(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._stc_after_init(options)

    def _stc_score_op(self) -> torch.nn.Module:
        return self.visual.blocks[-1].attn.attn

    def _stc_merged_order(self, grid_thw: list[list[int]]) -> torch.Tensor:
        return torch.arange(sum(t * h * w for t, h, w in grid_thw) // self.visual.spatial_merge_unit)

    def _stc_full_placeholder(self, placeholder: list[int], grid_thw: list[int]) -> list[int]:
        """Every temporal patch's <|vision_start|> followed by its N tokens (the compressed
        placeholder has the same text, its video tokens anywhere)."""
        t, h, w = grid_thw
        n = h * w // self.visual.spatial_merge_unit
        start, video = self.config.vision_start_token_id, self.config.video_token_id
        out: list[int] = []
        for token in placeholder:
            if token != video:
                out.append(token)
                if token == start:
                    out += [video] * n
        if placeholder.count(start) != t:
            raise ValueError(f"a Qwen3-VL video placeholder has one <|vision_start|> per temporal patch ({t}), "
                             f"found {placeholder.count(start)}")
        return out

    def _stc_placeholders(self, ids: torch.Tensor) -> list[tuple[int, int]]:
        """[start, end) of every media placeholder in a prompt's ids, in order: an image's run of
        image tokens; a video's timestamps, markers and tokens, between the chat template's own
        <|vision_start|> (followed by text: the first timestamp) and <|vision_end|> (right after
        the last patch's)."""
        cfg = self.config
        ids = ids.tolist()
        spans, i = [], 0
        while i < len(ids):
            if ids[i] == cfg.image_token_id:
                j = i
                while j < len(ids) and ids[j] == cfg.image_token_id:
                    j += 1
                spans.append((i, j))
                i = j
            elif (ids[i] == cfg.vision_start_token_id and i + 1 < len(ids)
                  and ids[i + 1] not in (cfg.video_token_id, cfg.image_token_id, cfg.vision_end_token_id,
                                         cfg.vision_start_token_id)):
                j = i + 1
                while j + 1 < len(ids) and not (ids[j] == ids[j + 1] == cfg.vision_end_token_id):
                    j += 1
                spans.append((i + 1, j + 1))
                i = j + 1
            else:
                i += 1
        return spans

    def recompute_mrope_positions(self, input_ids, multimodal_embeddings, mrope_positions, num_computed_tokens):
        """Write the positions of the placeholder tokens being computed now, from the position
        channels of their encoder output (relative to the placeholder's start; vLLM's
        ``_get_expanded_positions`` fills them with the unpruned prompt's positions, kept
        tokens' and text's). Every token outside the placeholders already has its final position
        from `get_mrope_input_positions`, which this leaves as it is.

        vLLM's own recomputation is not used for this layout: it locates a video by the first
        <|vision_start|> it finds, which with transformers >= 5.10 processors (5.19 in vLLM's
        environment) is the chat template's own marker before the placeholder, so every position
        of the video lands timestamp + 1 tokens early; and a chunk or prefix-cache hit that ends
        among the timestamps of a patch after the first is placed by counting video tokens in
        the ids, where a pruned placeholder counts them all in the first patch."""
        ids = torch.as_tensor(input_ids, dtype=torch.long).cpu()
        positions = mrope_positions.clone()
        live = [(a, b) for a, b in self._stc_placeholders(ids) if b > num_computed_tokens]
        assert len(live) >= len(multimodal_embeddings), "every encoder output belongs to a placeholder"
        out = []
        for mm, (start, end) in zip(multimodal_embeddings, live):
            first = max(start, num_computed_tokens)
            assert first + mm.shape[0] <= end, "an encoder output slice stays inside its placeholder"
            rel = mm[:, -5:-2].long().T.to(positions.device)
            positions[:, first : first + mm.shape[0]] = rel + positions[0, start - 1] + 1
            out.append(mm[:, :-5])
        delta = int(positions.max()) + 1 - ids.numel() if positions.numel() else -ids.numel()
        return out, positions, delta

    def _postprocess_video_embeds_evs(self, video_embeds_split, video_input) -> tuple[torch.Tensor, ...]:
        scores = self._stc_take_scores(len(video_embeds_split))
        grid_thw = video_input["video_grid_thw"].tolist()
        assert video_input.timestamps is not None
        merge = self.visual.spatial_merge_size
        dim = self.visual_dim
        out = []
        for emb, score, grid, timestamps in zip(video_embeds_split, scores, grid_thw, video_input.timestamps):
            t = int(grid[0])
            n = emb.shape[0] // t
            kept = compress_features(emb[:, :dim], score.to(emb.device), grid, merge, self.stc_options)
            tokens = kept.tokens.to(emb)
            if emb.shape[1] > dim:  # DeepStack levels: the same tokens at every level
                levels = emb[:, dim:].reshape(t, n, -1, dim).permute(2, 0, 1, 3)
                stacked = deepstack_levels(levels, kept).to(emb)  # [levels, B, D]
                tokens = torch.cat([tokens, stacked.permute(1, 0, 2).reshape(tokens.shape[0], -1)], dim=1)
            mask = torch.zeros(t * n, dtype=torch.bool, device=emb.device)
            mask[kept.source.to(emb.device)] = True
            out.append(self._create_final_video_embeddings(
                video_embeddings=tokens,
                num_tokens_per_frame=mask.view(t, n).sum(dim=1).tolist(),
                timestamps=timestamps,
                video_grid_thw=grid,
                retention_mask=mask,
            ))
        return tuple(out)


@MULTIMODAL_REGISTRY.register_processor(
    STCQwen3VLMultiModalProcessor, info=Qwen3VLProcessingInfo, dummy_inputs=Qwen3VLDummyInputsBuilder
)
class STCQwen3VLForConditionalGeneration(STCQwen3VLModel, Qwen3VLForConditionalGeneration):
    """Qwen3-VL with stc's stage 1 on every video (selected by ``hf_overrides``)."""

    stc_model_type = "qwen3_vl"


class STCQwen3VLMoeMultiModalProcessor(STCQwen3VLMultiModalProcessor):
    """`STCQwen3VLMultiModalProcessor` for Qwen3-VL-MoE checkpoints."""

    stc_model_type = "qwen3_vl_moe"


@MULTIMODAL_REGISTRY.register_processor(
    STCQwen3VLMoeMultiModalProcessor, info=Qwen3VLMoeProcessingInfo, dummy_inputs=Qwen3VLDummyInputsBuilder
)
class STCQwen3VLMoeForConditionalGeneration(STCQwen3VLModel, Qwen3VLMoeForConditionalGeneration):
    """Qwen3-VL-MoE with stc's stage 1 on every video (selected by ``hf_overrides``)."""

    stc_model_type = "qwen3_vl_moe"
