"""Qwen2.5-VL (and Qwen2-VL): the family adapter.

Features: the vision tower fuses 2 sampled frames into one temporal patch and merges 2x2
patches, so a pool "frame" is a temporal patch and its N tokens lie on the merged (h/2, w/2)
grid, row-major, exactly as `get_video_features` returns them. Scores: the mean attention each
patch RECEIVES in the last full-attention block (full attention runs within each temporal
patch; heads and that patch's queries averaged), recomputed from the block's q/k by a hook and
averaged over each merged 2x2 group. Qwen2.5-VL runs its blocks in window order and restores
the row-major order only after the merger, so the scores are put back the same way.

Positions are 3D mRoPE (t, h, w): the stock positions of the UNCOMPRESSED prompt are computed
once with the model's own `get_rope_index` and indexed with what is kept, so kept tokens keep
their original t/h/w and the text after the video keeps its stock positions. `generate` gets
them as 4 rows [mask positions; t; h; w], as stock generate builds them: row 0 only builds the
mask and must stay contiguous (0..L-1 of the shortened prompt). Decoding continues every row at
its last value + 1, the same rule stock generate applies to the uncompressed prompt (in
transformers 5.24 that is one past the last prompt token's position, not ``rope_deltas``' max
position + 1), so compressed and stock runs decode at the same positions. Neither pixels nor
video_grid_thw / mm_token_type_ids go to `generate`: the kept features arrive through
``mm_encoder_outputs`` and nothing recomputes positions from the full grid.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.vision_utils import get_vision_window_index

from ..attention import received_by_segment, rotate_half
from ..compress import Compressed
from ..results import Encoded
from ..video import Video
from .family import FamilyAdapter, PromptInputs


def received_hook(received: list[torch.Tensor]):
    """A forward pre-hook (with kwargs) for a Qwen vision block's attention that appends the mean
    attention each patch RECEIVES within its chunk of ``cu_seqlens`` (a temporal patch, or a
    window): [L] fp32 (`stc.attention.received_by_segment`, as vLLM's plugin scores), recomputed
    from the block's own qkv and rotary embedding. Qwen2-VL, Qwen2.5-VL and Qwen3-VL's towers
    share it."""

    def hook(attn, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        cu_seqlens = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
        cos, sin = kwargs["position_embeddings"]
        length = hidden.shape[0]
        q, k, _ = attn.qkv(hidden).reshape(length, 3, attn.num_heads, -1).unbind(1)  # [L, H, dh]
        cos, sin = cos.float()[:, None], sin.float()[:, None]
        q = q.float() * cos + rotate_half(q.float()) * sin  # as apply_rotary_pos_emb_vision
        k = k.float() * cos + rotate_half(k.float()) * sin
        received.append(received_by_segment(q, k, cu_seqlens, attn.scaling))

    return hook


class Qwen2_5_VLAdapter(FamilyAdapter):
    model_type = "qwen2_5_vl"
    processor_class = "Qwen2_5_VLProcessor"
    video_processor_kind = "qwen2_vl"
    # Qwen2.5-VL spaces temporal positions by real time (tokens_per_second x seconds per
    # temporal patch); Qwen2-VL numbers temporal patches 0, 1, 2, ...
    timed_positions = True

    @property
    def _core(self):
        return self.model.model

    def decoder_layers(self):
        return self._core.language_model.layers

    def vision_layers(self):
        return self._core.visual.blocks

    def _score_block(self):
        """The last full-attention block: the last one whose attention spans a whole temporal patch."""
        visual = self._core.visual
        return visual.blocks[visual.config.fullatt_block_indexes[-1]]

    def _merged_order(self, grid_thw: torch.Tensor) -> torch.Tensor | None:
        """Index taking merged units from block order to feature order (None: same order).

        Qwen2.5-VL permutes 2x2 merge units into window order before its blocks and
        un-permutes the merger's output with argsort(window_index); do the same.
        """
        cfg = self._core.visual.config
        window_index, _ = get_vision_window_index(
            grid_thw, spatial_merge_size=cfg.spatial_merge_size, window_size=cfg.window_size, patch_size=cfg.patch_size
        )
        return torch.argsort(window_index)

    @torch.no_grad()
    def encode(self, video: Video) -> Encoded:
        """Features [S, N, D] of S temporal patches (an odd frame count is padded by repeating the
        last frame, as the processor does) and their scores [S, N].

        timestamps: [S] (first frame of each temporal patch); aux: video_grid_thw [1, 3] (cpu),
        second_per_grid_ts [1] (None for Qwen2-VL).
        """
        model = self.model
        vcfg = model.config.vision_config
        merge = vcfg.spatial_merge_size
        temporal = vcfg.temporal_patch_size
        # The frames are already sampled; their metadata gives the processor's temporal spacing.
        out = self.processor.video_processor(
            videos=[video.frames], video_metadata=[video.to_video_metadata()], do_sample_frames=False,
            return_metadata=True, return_tensors="pt",
        )
        grid_thw = out["video_grid_thw"]
        pixels = out["pixel_values_videos"].to(model.device, self._core.visual.dtype)
        sampled_fps = out["video_metadata"][0].sampled_fps
        received: list[torch.Tensor] = []
        hook = received_hook(received)

        sync = torch.cuda.synchronize if pixels.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        handle = self._score_block().attn.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            vision = self._core.get_video_features(
                pixel_values_videos=pixels, video_grid_thw=grid_thw.to(model.device), return_dict=True
            )
        finally:
            handle.remove()
        features = vision.pooler_output[0]  # [S * N, D], row-major over (t, h/2, w/2)
        # patches (block order) -> mean over each 2x2 merge unit -> feature order
        scores = torch.cat(received).view(-1, merge * merge).mean(dim=-1)
        order = self._merged_order(grid_thw)
        if order is not None:
            scores = scores[order.to(scores.device)]
        gt, gh, gw = (int(x) for x in grid_thw[0])
        grid = (gh // merge, gw // merge)
        n = grid[0] * grid[1]
        sync()
        vision_seconds = time.perf_counter() - t0
        return Encoded(
            features=features.reshape(gt, n, -1),
            scores=scores.reshape(gt, n).float(),
            extra=None,
            grid=grid,
            frames_per_slot=temporal,
            vision_seconds=vision_seconds,
            # the first sampled frame of each temporal patch (the last one may be a repeat)
            timestamps=np.asarray(video.timestamps[::temporal], dtype=np.float64)[:gt],
            aux={
                "video_grid_thw": grid_thw.cpu(),
                # as Qwen2_5_VLProcessor: seconds covered by one temporal patch
                "second_per_grid_ts": torch.tensor([temporal / sampled_fps]) if self.timed_positions else None,
            },
        )

    def visual_tokens(self, video: Video) -> int:
        """The video processor's own grid for these frames (t x h x w / merge^2): it sizes frames
        by the whole clip, so the count is not a multiple of one frame's."""
        out = self.processor.video_processor(videos=[video.frames], video_metadata=[video.to_video_metadata()],
                                             do_sample_frames=False, return_tensors="pt")
        t, h, w = (int(x) for x in out["video_grid_thw"][0])
        return t * h * w // self.model.config.vision_config.spatial_merge_size ** 2

    def stock_positions(self, ids_before: list[int], ids_after: list[int], encoded: Encoded) -> torch.Tensor:
        """[3, L_full] stock mRoPE positions of the uncompressed prompt (all S*N placeholders)."""
        device = self.model.device
        total = encoded.num_tokens
        ids = torch.tensor([ids_before + [self.model.config.video_token_id] * total + ids_after], device=device)
        types = torch.zeros_like(ids, dtype=torch.int)
        types[:, len(ids_before) : len(ids_before) + total] = 2  # video
        spg = encoded.aux.get("second_per_grid_ts")
        positions, _ = self._core.get_rope_index(
            ids,
            mm_token_type_ids=types,
            video_grid_thw=encoded.aux["video_grid_thw"].to(device),
            second_per_grid_ts=None if spg is None else spg.to(device),
        )
        return positions[:, 0]

    def prompt_inputs(self, question: str, encoded: Encoded, kept: Compressed,
                      positions: str = "original") -> PromptInputs:
        # before ends with <|vision_start|>, after starts with <|vision_end|>
        ids_before, ids_after = self.prompt_ids(question)
        device = self.model.device
        s, total, n_kept = len(ids_before), encoded.num_tokens, kept.tokens.shape[0]
        full = self.stock_positions(ids_before, ids_after, encoded)  # [3, s + total + len(after)]
        keep = torch.cat(
            [
                torch.arange(s, device=device),
                s + kept.source.to(device),
                torch.arange(s + total, full.shape[1], device=device),
            ]
        )
        input_ids = torch.tensor([ids_before + [self.model.config.video_token_id] * n_kept + ids_after], device=device)
        length = input_ids.shape[1]
        # row 0 feeds only the causal mask (and flash attention's packing check): contiguous
        rows = full[:, keep]
        if positions == "contiguous":  # the compressed sequence renumbered as one 1D sequence on t, h, w
            rows = torch.arange(length, device=device).expand(3, -1)
        position_ids = torch.cat([torch.arange(length, device=device)[None], rows])[:, None]  # [4, 1, L]
        generate_kwargs = dict(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=position_ids,
            mm_encoder_outputs={"video": BaseModelOutputWithPooling(pooler_output=(kept.tokens,))},
        )
        return PromptInputs(
            generate_kwargs=generate_kwargs,
            prompt_len=length,
            visual_start=s,
            visual_end=s + n_kept,
            # <|vision_end|> closes the video and is neither visual nor a text row
            text_start=s + n_kept + 1,
        )


class Qwen2VLAdapter(Qwen2_5_VLAdapter):
    """Qwen2-VL: the same layout without window attention (every block attends a whole
    temporal patch, so the last block scores) and with temporal positions 0, 1, 2, ..."""

    model_type = "qwen2_vl"
    processor_class = "Qwen2VLProcessor"
    timed_positions = False

    def _score_block(self):
        return self._core.visual.blocks[-1]

    def _merged_order(self, grid_thw):
        return None
