"""Everything before generation: encode (cached, or streamed into stage 1), stage 1 through the
method (`Method.compress`, or its streaming twin `Method.compressor`), the prompt with exactly the
kept tokens, and stage 2's hooks planned at layer K."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..compress import Compressed
from ..config import STCConfig
from ..methods import Method, TokenCounts, get_method
from ..results import Encoded
from ..video import Video, VideoStream
from .family import FamilyAdapter, PromptInputs, check_question
from .inner import InnerPlan, InnerPruning, attention_layer_for
from .streaming import CHUNK_FRAMES, encode_stream, streams

if TYPE_CHECKING:
    from .base import VideoLLM


@dataclass
class Prepared:
    """One prompt ready for the model (see `VideoLLM.prepare`)."""

    encoded: Encoded
    cached: bool
    kept: Compressed
    inputs: PromptInputs
    compress_seconds: float
    pruning: InnerPruning | None

    def stage2(self):
        """Context manager: stage 2's hooks for one model call (a no-op without stage 2)."""
        return self.pruning if self.pruning is not None else nullcontext()


def inner_layer(adapter: FamilyAdapter, method: Method, config: STCConfig) -> int:
    """Layer K of ``method`` under ``config`` on this model: the method's default raised to the
    first layer the family allows (`FamilyAdapter.min_inner_layer`: Qwen3-VL's DeepStack adds
    vision features to the first layers' outputs at full length); an explicit ``inner_layer``
    below it is refused; then kept on a layer whose attention the method can read
    (`FamilyAdapter.reading_layer`: Qwen3.5's linear-attention layers have none)."""
    layer = method.layer(config, len(adapter.decoder_layers()))
    low = adapter.min_inner_layer
    if layer < low:
        if config.inner_layer is not None:
            raise ValueError(
                f"inner_layer must be >= {low} on {adapter.model_type}: its first {low} decoder layers add "
                f"vision features (DeepStack) to every visual token, so the sequence is shortened after them"
            )
        layer = low
    return adapter.reading_layer(layer, method, explicit=config.inner_layer is not None, low=low)


def prepare(llm: VideoLLM, video: Video | VideoStream, question: str, config: STCConfig | None = None,
            progress: Callable[[str], None] | None = None) -> Prepared:
    """`VideoLLM.prepare`'s body (see there)."""
    adapter = llm.adapter
    question = check_question(question)
    if config is not None and not isinstance(config, STCConfig):
        raise ValueError(f"config must be an stc.STCConfig or None, got {type(config).__name__}")
    if isinstance(video, VideoStream) and not streams(adapter, video, config):
        video = video.read()
    step = progress or (lambda _msg: None)
    method = get_method("none" if config is None else config.method)
    if streams(adapter, video, config):
        decoding = "decoding, " if isinstance(video, VideoStream) else ""
        step(f"{decoding}encoding and compressing {video.num_frames} frames, {CHUNK_FRAMES} at a time")
        encoded, kept, compress_seconds = encode_stream(adapter, video, config, llm.sync)
        cached, counts = False, method.counts(config, encoded.num_tokens)
    else:
        step("encoding video")
        encoded, cached = llm.encode(video)
        step("compressing" if method.stage1 is not None else "preparing prompt")
        total = encoded.num_tokens
        llm.sync()
        t0 = time.perf_counter()
        counts = method.counts(config, total) if config is not None else TokenCounts(total, total)
        kept = method.compress(encoded.features, encoded.scores, counts.stage1, grid=encoded.grid, config=config)
        llm.sync()
        compress_seconds = time.perf_counter() - t0 if method.stage1 is not None else 0.0
    rule = config.position_rule if config is not None else "original"
    inputs = adapter.prompt_inputs(question, encoded, kept, positions=rule)
    pruning = None
    n_stage1, keep_count = kept.tokens.shape[0], counts.after_layer
    if keep_count < n_stage1:
        layer = inner_layer(adapter, method, config)
        plan = InnerPlan(
            layer=layer,
            visual_start=inputs.visual_start,
            visual_end=inputs.visual_end,
            text_start=inputs.text_start,
            prompt_len=inputs.prompt_len,
            keep_count=keep_count,
            strategy=method.inner(config),
            attention_layer=attention_layer_for(layer, method.inner_attention),
            visual_index=inputs.visual_index,
        )
        pruning = InnerPruning(adapter.decoder_layers(), plan)
    return Prepared(encoded, cached, kept, inputs, compress_seconds, pruning)
