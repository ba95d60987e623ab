"""Qwen3.5 (dense) and Qwen3.5-MoE: the family adapter, Qwen3-VL's with what differs.

Qwen3.5 is natively multimodal and reuses Qwen3-VL's processor (`Qwen3VLProcessor`: timestamps as
text before each temporal patch), video processor, vision tower (patch 16, 2x2 merger, full
attention within a temporal patch) and interleaved mRoPE, so stage 1, the prompt layout, the
stock positions and the scores are `Qwen3VLAdapter`'s unchanged. What differs:

- **No DeepStack.** The tower returns only the merged features; nothing is added to the first
  decoder layers, so `min_inner_layer` is 0 and only the features the LLM reads are compressed.
- **A hybrid LLM.** Three of every four decoder layers are gated-delta-net (linear attention)
  layers; every fourth is a softmax-attention layer (``layer_types``). Stage 2 reads the text
  rows' attention to the visual tokens, which only a full-attention layer has, so the layer a
  method reads (K for stc, K-1 for FastV and HoliTom) must be a full-attention one
  (`attention_layers`): a default K is moved to the first later layer where it is (stc's
  round(18/28 x L) = 21 on 32 layers becomes 23; FastV's K = 3 becomes 4, reading layer 3), or to
  the last earlier one when no later one is, and an explicit one is refused with the valid
  choices.
- **What merging at K means for the linear-attention layers after it.** They run their
  recurrence (and short causal convolution) over the shorter sequence, at the original order of
  what is kept, so they cost less prefill compute in proportion; but their cache is a
  fixed-size state (per head a d_k x d_v matrix and a conv window), whatever the sequence
  length, so merging saves them no cache memory: only the full-attention layers >= K hold fewer
  keys and values. Nothing has to be sliced for them (they take no rotary embedding; their
  padding mask is None for a one-prompt batch).
- **Gated attention.** The full-attention layers' q projection also emits an output gate
  (sigmoid, applied after attention) and rotary covers a quarter of each head; the gate does not
  change the attention weights, so stage 2 drops it and rotates only the rotary dims
  (`stc.models.inner`).
"""

from __future__ import annotations

from .qwen3_vl import Qwen3VLAdapter


class Qwen3_5Adapter(Qwen3VLAdapter):
    model_type = "qwen3_5"

    def attention_layers(self) -> list[int]:
        types = self.model.config.get_text_config().layer_types
        return [i for i, kind in enumerate(types) if kind == "full_attention"]


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    """Qwen3.5-MoE: the same tower, prompt, positions and layer pattern; a mixture-of-experts
    MLP with a shared expert (nothing stc does depends on the MLP)."""

    model_type = "qwen3_5_moe"
