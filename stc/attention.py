"""Attention weights recomputed from a layer's q/k, for the rows and columns the method needs.

The models run on sdpa / flash attention, which never materialise attention weights. stc needs
two small pieces of them (the attention each encoder token receives, and the question's
attention to the visual tokens at decoder layer K); hooks hand these functions the layer's
normed input, and they recompute exactly what eager attention would for those rows only.
"""

from __future__ import annotations

import torch

__all__ = ["apply_rope", "attention_received", "causal_attention_rows", "received_by_segment", "repeat_kv", "rotate_half"]


# transformers' own two helpers, written out here so this light layer loads no model code (each
# transformers model file defines them identically; tests/test_attention.py pins them to Qwen2's).
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Rotates half the hidden dims of the input: [x1, x2] -> [-x2, x1] on the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, L, dh] -> [B, Hkv * n_rep, L, dh], each key/value head repeated ``n_rep`` times in
    place (``torch.repeat_interleave(x, n_rep, dim=1)``)."""
    batch, heads, length, dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    expanded = hidden_states[:, :, None, :, :].expand(batch, heads, n_rep, length, dim)
    return expanded.reshape(batch, heads * n_rep, length, dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding as transformers' Qwen2 / Qwen2.5-VL text layers apply it
    (`apply_rotary_pos_emb` with unsqueeze_dim=1, for one tensor: q and k take different rows).

    x: [B, H, L, dh]; cos, sin: [B, L, dh] (already recomposed for mRoPE).
    """
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def _expand_kv(k: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, Hkv, L, dh] -> [B, heads, L, dh] (grouped-query attention), as the model does."""
    return repeat_kv(k, heads // k.shape[1])


@torch.no_grad()
def attention_received(q: torch.Tensor, k: torch.Tensor, scale: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean attention each token receives (over heads and query tokens), non-causal.

    q: [B, H, L, dh]; k: [B, Hkv, L, dh]; mask: optional additive [B, 1, L, L].
    Returns [B, L] fp32. Computed one image at a time to bound memory at H x L x L.
    """
    k = _expand_kv(k, q.shape[1])
    out = []
    for b in range(q.shape[0]):
        logits = (q[b].float() @ k[b].float().transpose(-1, -2)) * scale  # [H, L, L]
        if mask is not None:
            logits = logits + mask[b].float()
        out.append(logits.softmax(dim=-1).mean(dim=(0, 1)))
    return torch.stack(out)


@torch.no_grad()
def received_by_segment(q: torch.Tensor, k: torch.Tensor, cu_seqlens: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean attention each token receives within its segment (heads and queries averaged).

    q, k: [L, H, dh] with rotary embedding applied; cu_seqlens: [S + 1] segment bounds (the
    full-attention block's: one segment per temporal patch). Returns [L] fp32. One segment at a
    time, heads as the batch, bounds memory at H x l x l.
    """
    bounds = cu_seqlens.tolist()
    out = [q.new_zeros(0, dtype=torch.float32)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            qs = q[a:b].transpose(0, 1)[:, None]  # [H, 1, l, dh]
            ks = k[a:b].transpose(0, 1)[:, None]
            out.append(attention_received(qs, ks, scale).mean(dim=0))
    return torch.cat(out)


@torch.no_grad()
def causal_attention_rows(
    q_rows: torch.Tensor, k: torch.Tensor, row_positions: torch.Tensor, scale: float
) -> torch.Tensor:
    """Causal attention probabilities of selected query rows over all keys.

    q_rows: [H, R, dh] queries of the rows (rope applied); k: [Hkv, L, dh] keys (rope applied);
    row_positions: [R] sequence index of each row (row r sees keys 0..row_positions[r]).
    Returns [H, R, L] fp32, each row summing to 1 over its visible keys.
    """
    k = _expand_kv(k[None], q_rows.shape[0])[0]
    logits = (q_rows.float() @ k.float().transpose(-1, -2)) * scale
    keys = torch.arange(k.shape[1], device=k.device)
    logits = logits.masked_fill(keys[None, None, :] > row_positions[None, :, None], float("-inf"))
    return logits.softmax(dim=-1)
