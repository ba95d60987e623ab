"""What an answer reports besides its text: `Stats` (token counts, FLOPs, measured costs) and
`Provenance` (the fate of every sampled patch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..compress import Compressed
from ..flop_count import flops
from ..merge import Merged
from ..results import DROPPED, MERGED_AT_K, REFILLED, SELECTED, Encoded, Provenance, Stats
from .generate import Generated
from .measure import PeakMemory
from .prepare import Prepared

if TYPE_CHECKING:
    from .base import VideoLLM


def stats(llm: VideoLLM, prep: Prepared, generated: Generated, memory: PeakMemory) -> Stats:
    """Token counts, FLOPs (this run and the uncompressed one) and the measured costs."""
    inputs, encoded = prep.inputs, prep.encoded
    merged = prep.pruning.merged if prep.pruning is not None else None
    n_stage1 = prep.kept.tokens.shape[0]
    n_stage2 = merged.keep_index.numel() if merged is not None else n_stage1
    layer = prep.pruning.plan.layer if merged is not None else None
    return Stats(
        visual_tokens=encoded.num_tokens,
        visual_tokens_stage1=n_stage1,
        visual_tokens_stage2=n_stage2,
        text_tokens=inputs.prompt_len - inputs.num_visual,
        new_tokens=generated.new_tokens,
        flops=flops(llm, n_stage1, inner_layer=layer, inner_keep=n_stage2 / n_stage1),
        flops_baseline=flops(llm, encoded.num_tokens),
        vision_seconds=encoded.vision_seconds,
        vision_cached=prep.cached,
        compress_seconds=prep.compress_seconds,
        prefill_seconds=generated.prefill_seconds,
        ttft_seconds=encoded.vision_seconds + prep.compress_seconds + generated.prefill_seconds,
        decode_tokens_per_second=generated.decode_tokens_per_second,
        peak_memory_bytes=int(memory.peak),
        peak_memory_kind=memory.kind,
        inner_layer=layer,
        device=str(llm.device),
    )


def provenance(encoded: Encoded, kept: Compressed, merged: Merged | None) -> Provenance:
    """Per-patch fate from stage 1's assignment and stage 2's kept set."""
    s, n, _ = encoded.features.shape
    gh, gw = encoded.grid
    slot = kept.assignment.cpu().numpy().astype(np.int32)
    selected = kept.selected.cpu().numpy()
    status = np.full(s * n, DROPPED, dtype=np.int8)
    cluster = np.full(s * n, -1, dtype=np.int32)
    has = slot >= 0
    status[has] = np.where(selected[slot[has]], SELECTED, REFILLED)
    refilled = has & (status == REFILLED)
    cluster[refilled] = slot[refilled]
    if merged is not None:
        kept_slots = np.zeros(kept.tokens.shape[0], dtype=bool)
        kept_slots[merged.keep_index.cpu().numpy()] = True
        status[has & ~kept_slots[np.maximum(slot, 0)]] = MERGED_AT_K
    source = kept.source.cpu().numpy()
    if merged is not None:
        source = source[merged.keep_index.cpu().numpy()]
    timestamps = encoded.timestamps if encoded.timestamps is not None else np.zeros(s)
    return Provenance(
        status=status.reshape(s, gh, gw),
        cluster=cluster.reshape(s, gh, gw),
        slot=slot.reshape(s, gh, gw),
        frames_per_slot=encoded.frames_per_slot,
        timestamps=np.asarray(timestamps, dtype=np.float64),
        tokens_per_frame=np.bincount(source // n, minlength=s),
    )
