"""What stc's vLLM model classes share (`qwen2_5_vl.py`, `qwen3_vl.py`: Qwen3-VL and Qwen3-VL-MoE): the checks, the score
hook on the vision tower, and the start positions of a compressed prompt.

Each class is ``class STC...(STCVideoModel, <vLLM's class>)``; it names its vision tower's
scoring attention op (`_stc_score_op`), the order the tower puts merged tokens in
(`_stc_merged_order`), a video's uncompressed placeholder (`_stc_full_placeholder`), and keeps
vLLM's pruning hook ``_postprocess_video_embeds_evs`` for its family's layout.

- Checks (`_stc_before_init` / `_stc_after_init`): the checkpoint's family and the stc_* options
  (the config-time check in ``__init__.py`` refuses them earlier, in the main process), and the
  engine settings stc cannot serve: ``--video-pruning-rate`` (two pruners on one engine),
  ``mm_encoder_tp_mode="data"`` (the vision tower is sharded by item, the hook sees a shard),
  ``cudagraph_mm_encoder`` (a replayed graph runs no hook and skips ``embed_multimodal``), and
  precomputed ``video_embeds`` (no attention to score with).
- Scores (`_process_video_input`): a forward pre-hook on the scoring block's attention op reads
  q/k (rotary applied) and yields the mean attention each patch receives within its temporal
  patch, then the mean over each merged unit in feature order (`stage1.merge_unit_scores`).
- Start positions (`get_mrope_input_positions`): vLLM computes a request's mRoPE positions from
  its token ids before any encoder runs and recomputes them only for media it encodes; on a
  prefix-cache hit that covers a whole video the text after it keeps these start positions. So
  they are vLLM's own positions of the UNCOMPRESSED prompt (`stage1.uncompressed_prompt`),
  indexed by where each token of the compressed prompt stands in it: the text after a video is
  where the uncompressed prompt puts it (stc's kept tokens keep their stock positions, so the
  encoder's recomputed positions put it there too), and a video's placeholders hold stock
  positions until its encoder output replaces them.
"""

from __future__ import annotations

import dataclasses

import torch
from vllm.distributed import get_tensor_model_parallel_world_size, tensor_model_parallel_all_reduce

from ...attention import received_by_segment
from .stage1 import ARCHITECTURES, Stage1Options, check_config, merge_unit_scores, uncompressed_prompt

__all__ = ["ReceivedAttention", "STCVideoModel"]


class ReceivedAttention:
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

    def __enter__(self) -> ReceivedAttention:
        self._handle = self.op.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


class STCVideoModel:
    """Mixin before a vLLM multimodal model class (module docstring)."""

    stc_model_type: str  # the checkpoint model_type the class serves

    @classmethod
    def stc_architecture(cls) -> str:
        return ARCHITECTURES[cls.stc_model_type]

    def _stc_before_init(self, vllm_config) -> Stage1Options:
        """Checks, then turn vLLM's pruned-media path on: its runners recompute mRoPE positions
        for pruned media only when the multimodal config says video pruning is on, and its
        model classes build their pruning layout only then. Any rate in (0, 1) turns it on;
        the rate itself is never read by stc's path (vLLM's pruner never runs here)."""
        options = check_config(vllm_config.model_config.hf_config, self.stc_architecture())
        mm_config = vllm_config.model_config.get_multimodal_config()
        if mm_config.video_pruning_rate:
            raise ValueError(
                "stc and --video-pruning-rate both prune videos: serve stc with hf_overrides "
                "(stc_retention) and vLLM's pruning with --video-pruning-rate, not both on one engine"
            )
        if getattr(vllm_config.compilation_config, "cudagraph_mm_encoder", False):
            raise NotImplementedError(
                "stc scores videos with a hook in the vision tower, which a CUDA-graph replay of the "
                "encoder skips: turn cudagraph_mm_encoder off in the compilation config for stc"
            )
        mm_config.video_pruning_rate = min(max(1.0 - options.retention, 1e-6), 0.999999)
        return options

    def _stc_after_init(self, options: Stage1Options) -> None:
        self.stc_options = options
        self.is_multimodal_pruning_enabled = True
        if self.use_data_parallel:
            raise NotImplementedError(
                "stc's scores hook the vision tower, which mm_encoder_tp_mode='data' shards by item; "
                "use the default mm_encoder_tp_mode (tensor parallel and --data-parallel-size work)"
            )
        self._stc_scores: list[torch.Tensor] | None = None

    # -- per family ---------------------------------------------------------------------------
    def _stc_score_op(self) -> torch.nn.Module:
        raise NotImplementedError

    def _stc_merged_order(self, grid_thw: list[list[int]]) -> torch.Tensor:
        """Per merged token (all videos of the call), its index in the tower's output order."""
        raise NotImplementedError

    def _stc_full_placeholder(self, placeholder: list[int], grid_thw: list[int]) -> list[int]:
        """The uncompressed placeholder of a video whose (compressed) placeholder is given."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        """[3, len(input_tokens)] start positions and the decode offset (module docstring)."""
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        media = []
        for f in features:
            offset, length = f.mm_position.offset, f.mm_position.length
            full = None
            if f.modality == "video":
                grid = [int(x) for x in f.data["video_grid_thw"].data.tolist()]
                full = self._stc_full_placeholder(list(input_tokens[offset : offset + length]), grid)
            media.append((offset, length, full))
        tokens, offsets, index = uncompressed_prompt(list(input_tokens), media, self.config.video_token_id)
        full_features = [
            dataclasses.replace(f, mm_position=dataclasses.replace(
                f.mm_position, offset=o, length=len(full) if full is not None else f.mm_position.length, is_embed=None))
            for f, o, (_, _, full) in zip(features, offsets, media)
        ]
        positions, _ = super().get_mrope_input_positions(tokens, full_features)
        positions = positions[:, torch.from_numpy(index)]
        return positions, int(positions.max()) + 1 - len(input_tokens) if positions.numel() else 0

    def _process_video_input(self, video_input) -> tuple[torch.Tensor, ...]:
        if video_input["type"] != "pixel_values_videos":
            raise ValueError("stc scores videos in the vision tower: send pixels, not precomputed video_embeds")
        grid_thw = video_input["video_grid_thw"].tolist()
        with ReceivedAttention(self._stc_score_op()) as hook:
            embeds = super()._process_video_input(video_input)
        (received,) = hook.received
        scores = merge_unit_scores(received, self.visual.spatial_merge_unit, self._stc_merged_order(grid_thw))
        self._stc_scores = list(scores.split([e.shape[0] for e in embeds]))
        return embeds

    def _stc_take_scores(self, count: int) -> list[torch.Tensor]:
        scores, self._stc_scores = self._stc_scores, None
        assert scores is not None and len(scores) == count, "scores come from _process_video_input"
        return scores
