"""Qwen3-VL (dense) and Qwen3-VL-MoE: the family adapter.

What is new next to Qwen2.5-VL (`qwen2_5_vl.py`), and what stc does about it:

- **Timestamps as text.** The processor writes each temporal patch (2 frames) of a video as
  ``<t seconds><|vision_start|>`` + its N tokens + ``<|vision_end|>``, all inside the chat
  template's own ``<|vision_start|> ... <|vision_end|>`` pair; time lives in that text (the
  temporal mRoPE row is just the running position). **[choice]** A temporal patch that keeps
  zero tokens contributes NOTHING: its timestamp and its marker pair are dropped with it, and
  every kept token (timestamps of the patches that keep tokens included) keeps its stock
  position. Why: a timestamp introduces what follows it; with nothing following it carries no
  evidence, only the claim that a moment was shown. And it is not free: one patch's text is 8-9
  tokens with Qwen's digit-by-digit tokenizer ("<12.5 seconds>" + 2 markers), so at 2% of 32
  frames (16 patches) keeping empty patches' text would add more tokens than the visual budget
  itself (~130 against ~60 on Qwen3-VL-8B's 192 tokens per patch). The kept timestamps still
  date every kept token, and the positions keep the gaps where dropped patches were.
- **Interleaved mRoPE.** Positions are the stock ones of the UNCOMPRESSED prompt (timestamps
  and all patches), computed once with the model's own `get_rope_index` and indexed with what
  is kept, as for Qwen2.5-VL; `generate` gets [mask row; t; h; w].
- **DeepStack.** The tower also taps some of its blocks (`deepstack_visual_indexes`) through
  their own mergers; the LLM adds level i to the visual tokens' hidden states after decoder
  layer i. Stage 1 decides on the last level (the features the LLM reads) and the SAME tokens
  go to every level: a selected token is that patch at every level; a refilled cluster is the
  mean of the same members at every level (`deepstack_levels`). Stage 2 shortens the sequence
  only after the DeepStack layers (`min_inner_layer` = the number of levels, 3 on every
  released checkpoint): K = round(18/28 x L) is 18 (28 layers) or 23 (36), FastV's K = 3 at 28
  layers is allowed as it is; a default below (tiny models) is raised to it and an explicit one
  is refused.
- **Scores.** Every block of the tower attends a whole temporal patch (no windows), so the last
  block scores: the mean attention each patch receives there, over each merged 2x2 group (the
  merger's units are 4 consecutive patches, in feature order).
- **Not streamable.** The processor sizes frames from the whole video's pixel count, so chunks
  would be resized differently from the one-pass encoding; long videos take the one-pass path.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..arith import segment_mean
from ..compress import Compressed
from ..results import Encoded
from ..video import Video
from .family import PromptInputs
from .qwen2_5_vl import Qwen2_5_VLAdapter, received_hook


def deepstack_levels(levels: torch.Tensor, kept: Compressed) -> torch.Tensor:
    """The same compression on every DeepStack level: [levels, S, N, D] -> [levels, B, D].

    Slot j of ``kept`` is, at every level, the patch ``kept.source[j]`` when it was selected, and
    the mean of the patches assigned to it (``kept.assignment == j``) when it is a refilled
    cluster; with every token kept this is the levels themselves, bit for bit. For stc, stc-stage1,
    stc-st, uniform and FlashVID this reproduces their own tokens on the last level exactly; FastVID
    and VisionZip build merged tokens by rules of their own (not the plain mean of the members
    they assign), so their DeepStack levels get the plain mean of the same members.
    """
    n_levels, s, n, d = levels.shape
    flat = levels.reshape(n_levels, s * n, d)
    out = flat[:, kept.source.to(flat.device)].clone()
    refilled = ~kept.selected.to(flat.device)
    if bool(refilled.any()):
        assignment = kept.assignment.to(flat.device)
        slot_of = torch.full((kept.tokens.shape[0],), -1, dtype=torch.long, device=flat.device)
        slot_of[refilled] = torch.arange(int(refilled.sum()), device=flat.device)
        label = torch.where(assignment >= 0, slot_of[assignment.clamp(min=0)], -1)
        members = label >= 0
        for i in range(n_levels):
            out[i, refilled] = segment_mean(flat[i, members], label[members], int(refilled.sum()))
    return out


class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    model_type = "qwen3_vl"
    processor_class = "Qwen3VLProcessor"
    video_processor_kind = "qwen3_vl"
    streamable = False

    def _score_block(self):
        return self._core.visual.blocks[-1]

    def _merged_order(self, grid_thw):
        return None

    @property
    def min_inner_layer(self) -> int:
        return len(getattr(self._core.visual.config, "deepstack_visual_indexes", None) or ())

    @torch.no_grad()
    def encode(self, video: Video) -> Encoded:
        """Features [S, N, D] of S temporal patches and their scores [S, N].

        deepstack: [levels, S, N, D] (None without DeepStack); timestamps: [S] (first frame of
        each patch, for provenance); aux: video_grid_thw [1, 3] (cpu), stamps [S] (the seconds the
        processor writes before each temporal patch).
        """
        model = self.model
        vcfg = model.config.vision_config
        merge, temporal = vcfg.spatial_merge_size, vcfg.temporal_patch_size
        out = self.processor.video_processor(
            videos=[video.frames], video_metadata=[video.to_video_metadata()], do_sample_frames=False,
            return_metadata=True, return_tensors="pt",
        )
        grid_thw = out["video_grid_thw"]
        pixels = out["pixel_values_videos"].to(model.device, self._core.visual.dtype)
        metadata = out["video_metadata"][0]
        # exactly the seconds the processor writes (its own rule; fps 24 when unknown, as it does)
        stamps = self.processor._calculate_timestamps(
            list(metadata.frames_indices), metadata.fps if metadata.fps is not None else 24, temporal
        )
        received: list[torch.Tensor] = []
        sync = torch.cuda.synchronize if pixels.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        handle = self._score_block().attn.register_forward_pre_hook(received_hook(received), with_kwargs=True)
        try:
            vision = self._core.get_video_features(
                pixel_values_videos=pixels, video_grid_thw=grid_thw.to(model.device), return_dict=True
            )
        finally:
            handle.remove()
        gt, gh, gw = (int(x) for x in grid_thw[0])
        grid = (gh // merge, gw // merge)
        n = grid[0] * grid[1]
        features = vision.pooler_output[0].reshape(gt, n, -1)
        scores = torch.cat(received).view(-1, merge * merge).mean(dim=-1)
        levels = getattr(vision, "deepstack_features", None)
        sync()
        return Encoded(
            features=features, scores=scores.reshape(gt, n).float(), extra=None, grid=grid,
            frames_per_slot=temporal, vision_seconds=time.perf_counter() - t0,
            timestamps=np.asarray(video.timestamps[::temporal], dtype=np.float64)[:gt],
            deepstack=torch.stack([level[0].reshape(gt, n, -1) for level in levels]) if levels else None,
            aux={"video_grid_thw": grid_thw.cpu(), "stamps": [float(t) for t in stamps]},
        )

    def _layout(self, ids_before: list[int], ids_after: list[int], encoded: Encoded):
        """The uncompressed prompt: its ids, and per temporal patch the [start, end) of its
        segment (timestamp, markers, tokens) and the index of its first visual token."""
        cfg = self.model.config
        s, n = encoded.features.shape[:2]
        ids = list(ids_before)
        segments, first = [], []
        for t in range(s):
            start = len(ids)
            ids += self.tokenizer(f"<{encoded.aux['stamps'][t]:.1f} seconds>", add_special_tokens=False)["input_ids"]
            ids.append(cfg.vision_start_token_id)
            first.append(len(ids))
            ids += [cfg.video_token_id] * n
            ids.append(cfg.vision_end_token_id)
            segments.append((start, len(ids)))
        return ids + list(ids_after), segments, first

    def stock_positions(self, ids: list[int], encoded: Encoded) -> torch.Tensor:
        """[3, L_full] stock mRoPE positions of the uncompressed prompt ``ids``."""
        device = self.model.device
        ids = torch.tensor([ids], device=device)
        types = (ids == self.model.config.video_token_id).int() * 2  # video
        positions, _ = self._core.get_rope_index(
            ids, mm_token_type_ids=types, video_grid_thw=encoded.aux["video_grid_thw"].to(device)
        )
        return positions[:, 0]

    def prompt_inputs(self, question: str, encoded: Encoded, kept: Compressed,
                      positions: str = "original") -> PromptInputs:
        ids_before, ids_after = self.prompt_ids(question)
        device = self.model.device
        s, n = encoded.features.shape[:2]
        full_ids, segments, first = self._layout(ids_before, ids_after, encoded)
        full = self.stock_positions(full_ids, encoded)
        source = kept.source.to("cpu")
        mask = torch.ones(len(full_ids), dtype=torch.bool)
        per_patch = torch.bincount(source // n, minlength=s)
        for t, (a, b) in enumerate(segments):
            if per_patch[t] == 0:  # nothing of this patch reaches the LLM: neither does its timestamp
                mask[a:b] = False
            else:
                mask[first[t] : first[t] + n] = False
        mask[torch.as_tensor(first)[source // n] + source % n] = True
        keep = mask.nonzero()[:, 0].to(device)
        input_ids = torch.tensor(full_ids, device=device)[keep][None]
        length = input_ids.shape[1]
        visual_index = (input_ids[0] == self.model.config.video_token_id).nonzero()[:, 0]
        rows = full[:, keep]
        if positions == "contiguous":
            rows = torch.arange(length, device=device).expand(3, -1)
        position_ids = torch.cat([torch.arange(length, device=device)[None], rows])[:, None]  # [4, 1, L]
        video = self._video_output(kept, encoded)
        generate_kwargs = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=position_ids,
            mm_encoder_outputs={"video": video},
        )
        # the video closes with the last kept patch's <|vision_end|>, then the template's own
        text_start = length - len(ids_after) + 1
        return PromptInputs(
            generate_kwargs=generate_kwargs,
            prompt_len=length,
            visual_start=int(visual_index[0]),
            visual_end=int(visual_index[-1]) + 1,
            text_start=text_start,
            visual_index=visual_index,
        )

    def _video_output(self, kept: Compressed, encoded: Encoded):
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        deepstack = None
        if encoded.deepstack is not None:
            deepstack = [(level,) for level in deepstack_levels(encoded.deepstack, kept)]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=(kept.tokens,), deepstack_features=deepstack)


class Qwen3VLMoeAdapter(Qwen3VLAdapter):
    """Qwen3-VL-MoE: the same vision tower, prompt and positions; a mixture-of-experts LLM
    (which changes nothing stc does: stage 2 hooks the decoder layers' attention)."""

    model_type = "qwen3_vl_moe"
