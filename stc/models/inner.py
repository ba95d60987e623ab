"""Shortening the visual span inside the LLM at decoder layer K (stc stage 2, FastV, HoliTom).

A reversible, per-instance patch made of forward pre-hooks on the decoder layers; no forward is
copied. During prefill the hook on layer K shows a strategy the attention of the prompt's text
rows to the visual tokens, asks it which visual tokens to keep (and what they become), and hands
layer K a shorter sequence. That attention is recomputed from one layer's own normed input, q/k
and rotary embedding: layer K's (stc's stage 2) or, for methods whose official code reads the
previous layer's weights (FastV, HoliTom), layer K-1's, recorded by a pre-hook on layer K-1 in
the same prefill (at K = 0, layer 0's own). Because the decoder computed rotary cos/sin and the
mask once at full length, every layer >= K gets them sliced with the same index, so kept tokens
keep the positions the prompt gave them (original or contiguous: the config's rule). Layers >= K then cache fewer keys and values, which is what makes
decoding cheaper too. Decoding steps pass through untouched (the mask, when the attention
backend needs one, loses the pruned key columns; layer K-1's hook records nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..attention import apply_rope, causal_attention_rows
from ..merge import Merged


@dataclass(frozen=True)
class InnerContext:
    """What a layer-K strategy sees (batch of one prompt).

    visual:    [Nv, D] hidden states of the visual tokens at the input of layer K.
    text:      [Nt, D] hidden states of the text rows (prompt tokens after the video).
    text_attn: [Nt, Nv] attention of the text rows to the visual tokens, heads averaged, computed
               in layer ``plan.attention_layer`` (K, or K-1; see `InnerPlan`).
    last_attn: [Nv] the last prompt token's row of ``text_attn``.
    keep_count: how many visual tokens the strategy must keep.
    """

    visual: torch.Tensor
    text: torch.Tensor
    text_attn: torch.Tensor
    last_attn: torch.Tensor
    keep_count: int


Strategy = Callable[[InnerContext], Merged]

# Which layer's attention a layer-K strategy sees: layer K's own ("same", stc's stage 2, as the
# paper does) or the attention computed inside layer K-1 ("previous", as FastV's and HoliTom's
# official code read it from the previous layer's output weights).
INNER_ATTENTION = ("same", "previous")


def attention_layer_for(layer: int, inner_attention: str) -> int:
    """The decoder layer whose attention a strategy at ``layer`` sees.

    "previous" at K = 0 has no layer K-1: it falls back to layer 0's own attention."""
    if inner_attention not in INNER_ATTENTION:
        raise ValueError(f"inner_attention must be one of {INNER_ATTENTION}, got {inner_attention!r}")
    return max(layer - 1, 0) if inner_attention == "previous" else layer


@dataclass(frozen=True)
class InnerPlan:
    """Where and how much to shorten: layer K, the visual span [start, end) of the prompt,
    the first text row, the prompt length, and the number of visual tokens to keep.

    attention_layer: the layer whose attention the strategy sees, K or K-1 (None: K); see
    `attention_layer_for`."""

    layer: int
    visual_start: int
    visual_end: int
    text_start: int
    prompt_len: int
    keep_count: int
    strategy: Strategy
    attention_layer: int | None = None
    # Prompt positions of the visual tokens where text lies between them (Qwen3-VL's
    # timestamps); None: the span [visual_start, visual_end). Pruning keeps every other token.
    visual_index: torch.Tensor | None = None

    @property
    def source_layer(self) -> int:
        return self.layer if self.attention_layer is None else self.attention_layer


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rope` on the first cos.shape[-1] dims of each head, the rest unrotated (partial
    rotary, Qwen3.5's 0.25 of head_dim; all of them elsewhere)."""
    dims = cos.shape[-1]
    if dims == x.shape[-1]:
        return apply_rope(x, cos, sin)
    return torch.cat([apply_rope(x[..., :dims], cos, sin), x[..., dims:]], dim=-1)


class InnerPruning:
    """Context manager installing the layer-K hooks on ``layers`` (a decoder's ModuleList).

    After the prefill, ``merged`` holds the strategy's result (keep_index and assignment are
    relative to the visual span) and ``keep`` the kept prompt positions; both stay readable after
    the block. Re-entrant: a later ``with`` starts a fresh prefill (the same plan, computed
    again), and a ``with`` nested in an active one shares its hooks and state; the hooks are
    removed when the outermost block exits.
    """

    def __init__(self, layers: nn.ModuleList, plan: InnerPlan):
        if not 0 <= plan.layer < len(layers):
            raise ValueError(f"inner_layer must be in [0, {len(layers) - 1}] for this model, got {plan.layer}")
        if plan.source_layer not in (plan.layer - 1, plan.layer):
            raise ValueError(f"attention_layer must be layer K or K-1 (K = {plan.layer}), got {plan.attention_layer}")
        if not hasattr(layers[plan.source_layer], "self_attn"):
            raise ValueError(f"decoder layer {plan.source_layer} has no softmax attention (a linear-attention layer): "
                             "stage 2 reads its attention from a full-attention layer")
        self.layers = layers
        self.plan = plan
        self.keep: torch.Tensor | None = None
        self.merged: Merged | None = None
        self._attention: torch.Tensor | None = None  # [Nt, Nv], recorded by layer K-1 this prefill
        self._handles: list = []
        self._depth = 0
        # Decoding masks are sized from the first attention layer's cache (layer 0, or Qwen3.5's
        # first full-attention layer): if that layer is K or later, its cache is already short.
        self._mask_layer = next((i for i, layer in enumerate(layers) if hasattr(layer, "self_attn")), 0)

    @property
    def active(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> "InnerPruning":
        self._depth += 1
        if self._depth == 1:
            self.keep, self.merged = None, None  # a new prefill, not a decoding step of the last one
            self._attention = None
            k = self.plan.layer
            if self.plan.source_layer != k:
                source = self.layers[self.plan.source_layer]
                self._handles.append(source.register_forward_pre_hook(self._record, with_kwargs=True))
            self._handles.append(self.layers[k].register_forward_pre_hook(self._prune, with_kwargs=True))
            for layer in self.layers[k + 1 :]:
                self._handles.append(layer.register_forward_pre_hook(self._follow, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self.remove()

    def remove(self) -> None:
        """Remove every hook now (also from inside a block)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._depth = 0

    # -- hooks -------------------------------------------------------------------------------
    @staticmethod
    def _hidden(args, kwargs) -> torch.Tensor:
        return args[0] if args else kwargs["hidden_states"]

    def _text_attention(self, layer: nn.Module, hidden: torch.Tensor, kwargs) -> torch.Tensor:
        """[Nt, Nv] attention of the text rows to the visual span inside ``layer`` (heads
        averaged), recomputed from the layer's own normed input, q/k and rotary embedding."""
        p = self.plan
        if hidden.shape[0] != 1:
            raise ValueError("stc compresses one video prompt at a time (batch size 1)")
        attn = layer.self_attn
        normed = layer.input_layernorm(hidden)
        cos, sin = kwargs["position_embeddings"]
        rows = torch.arange(p.text_start, p.prompt_len, device=hidden.device)
        heads = attn.config.num_attention_heads
        # Qwen3.5's gated attention packs [query | output gate] per head; the gate acts after
        # attention, so the weights need only the query half.
        q = attn.q_proj(normed[:, rows]).view(1, rows.numel(), heads, -1)[..., : attn.head_dim]
        k = attn.k_proj(normed).view(1, p.prompt_len, -1, attn.head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3's per-head norms, before the rotary embedding
            q, k = attn.q_norm(q), attn.k_norm(k)
        q = _rope(q.transpose(1, 2), cos[:, rows], sin[:, rows])
        k = _rope(k.transpose(1, 2), cos, sin)
        probs = causal_attention_rows(q[0], k[0], rows, attn.scaling).mean(dim=0)  # [Nt, L]
        if p.visual_index is not None:
            return probs[:, p.visual_index.to(probs.device)]
        return probs[:, p.visual_start : p.visual_end]

    def _record(self, layer: nn.Module, args, kwargs):
        """Layer K-1, prefill only: keep its attention for layer K's strategy; change nothing."""
        hidden = self._hidden(args, kwargs)
        if self.keep is None and hidden.shape[1] == self.plan.prompt_len:
            self._attention = self._text_attention(layer, hidden, kwargs)

    def _prune(self, layer: nn.Module, args, kwargs):
        hidden = self._hidden(args, kwargs)
        p = self.plan
        if self.keep is not None or hidden.shape[1] != p.prompt_len:
            return self._follow(layer, args, kwargs)  # a decoding step
        if p.source_layer == p.layer:
            visual_cols = self._text_attention(layer, hidden, kwargs)
        elif self._attention is None:
            raise RuntimeError(f"layer {p.source_layer} did not run before layer {p.layer} in this prefill")
        else:
            visual_cols, self._attention = self._attention, None
        visual = p.visual_index.to(hidden.device) if p.visual_index is not None else slice(p.visual_start, p.visual_end)
        ctx = InnerContext(
            visual=hidden[0, visual],
            text=hidden[0, p.text_start :],
            text_attn=visual_cols,
            last_attn=visual_cols[-1],
            keep_count=p.keep_count,
        )
        merged = p.strategy(ctx)
        device = hidden.device
        if p.visual_index is None:
            keep = torch.cat(
                [
                    torch.arange(p.visual_start, device=device),
                    p.visual_start + merged.keep_index,
                    torch.arange(p.visual_end, p.prompt_len, device=device),
                ]
            )
            slots = slice(p.visual_start, p.visual_start + merged.keep_index.numel())
        else:  # visual tokens among text: drop the merged ones, keep every other token in place
            kept_positions = visual[merged.keep_index]
            mask = torch.ones(p.prompt_len, dtype=torch.bool, device=device)
            mask[visual] = False
            mask[kept_positions] = True
            keep = mask.nonzero()[:, 0]
            slots = torch.cumsum(mask, 0)[kept_positions] - 1
        new_hidden = hidden[:, keep].clone()
        new_hidden[0, slots] = merged.tokens.to(hidden.dtype)
        self.keep, self.merged = keep, merged
        return self._sliced(args, kwargs, new_hidden)

    def _follow(self, layer: nn.Module, args, kwargs):
        if self.keep is None:
            return None
        return self._sliced(args, kwargs, self._hidden(args, kwargs))

    def _sliced(self, args, kwargs, hidden: torch.Tensor):
        """Index everything that was computed at full prompt length with ``self.keep``."""
        full = self.plan.prompt_len
        keep = self.keep
        kwargs = dict(kwargs)
        cos, sin = kwargs["position_embeddings"]
        prefill = cos.shape[-2] == full
        if prefill:
            kwargs["position_embeddings"] = (cos[:, keep], sin[:, keep])
            pos = kwargs.get("position_ids")
            if isinstance(pos, torch.Tensor) and pos.shape[-1] == full:
                kwargs["position_ids"] = pos[..., keep]
        mask = kwargs.get("attention_mask")
        # With K <= the first attention layer the decoder sizes decoding masks from its (already
        # short) cache.
        if isinstance(mask, torch.Tensor) and mask.dim() == 4 and (prefill or self.plan.layer > self._mask_layer):
            cols = torch.cat([keep, torch.arange(full, mask.shape[-1], device=keep.device)])
            mask = mask[..., cols]
            if prefill and mask.shape[-2] == full:
                mask = mask[..., keep, :]
            kwargs["attention_mask"] = mask
        if args:
            return (hidden, *args[1:]), kwargs
        kwargs["hidden_states"] = hidden
        return args, kwargs
