"""An independent reference for the plugin, computed with transformers on the same checkpoint.

Nothing here touches vLLM or the plugin's code: features and contribution scores come from
stc's transformers adapter (`Qwen2_5_VLAdapter.encode`: transformers' own vision tower, its
window order, its hook), the kept tokens from `stc.compress_tokens`, and positions follow vLLM's
rules, written out here: text before the video 0..s-1; a kept video token at
s + (floor(t * seconds_per_patch * tokens_per_second), h, w) of its place in the full grid; the
text after the video from s + (the full grid's largest position + 1) on; generated tokens
continue from the prompt's largest position + 1. Greedy decoding re-runs the whole sequence
each step (no cache), so nothing of `generate` is involved either.

``vision``: vLLM's own vision features and scores of the video, to run `stc.compress_tokens`
on instead of transformers' (the caller checks first that the two agree to float precision).
stc's choices can hinge on float-level ties: on gradio's world.mp4 (a globe on black) the
recycle pool holds near-identical black tokens whose DPC-kNN densities agree to ~1e-7, so
which of two neighbours is the denser (and becomes a cluster centre) flips with the last bits
of the features (2.6e-6 apart between vLLM's vision tower and transformers'); the kept tokens
then sit at other positions and the first-token log-probabilities move by ~0.02. Starting from
the same features makes the reference break those ties as vLLM does; everything after the
vision tower stays independent.
"""

from __future__ import annotations

import numpy as np
import torch

from stc.arith import budget_for
from stc.compress import compress_tokens
from stc.video import Video


def load(checkpoint: str):
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from stc.models.qwen2_5_vl import Qwen2_5_VLAdapter

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32,
                                                               attn_implementation="sdpa").eval()
    return Qwen2_5_VLAdapter(model, AutoProcessor.from_pretrained(checkpoint))


def _positions(s: int, grid: tuple[int, int, int], t_factor: float, source: torch.Tensor, after: int,
               text_offset: int | None) -> torch.Tensor:
    """[3, L] positions of a prompt: s text tokens, the kept video tokens, ``after`` text tokens
    from s + text_offset (None: the full grid's largest position + 1)."""
    t, gh, gw = grid
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(gh), torch.arange(gw), indexing="ij")
    full = torch.stack([(tt.double() * t_factor).floor().long(), hh, ww]).reshape(3, -1)
    before = torch.arange(s).expand(3, -1)
    video = s + full[:, source]
    text_start = s + (int(full.max()) + 1 if text_offset is None else text_offset)
    return torch.cat([before, video, (text_start + torch.arange(after)).expand(3, -1)], dim=1)


def _encode_and_compress(adapter, frames: np.ndarray, fps: float, retention: float,
                         vision: tuple[torch.Tensor, torch.Tensor] | None):
    """transformers' encoding of ``frames`` (the `Encoded`), the features and scores stage 1 reads
    (vLLM's own when ``vision`` is given: see the module docstring) and stc's stage 1 on them."""
    video = Video(frames=frames, timestamps=np.arange(len(frames)) / fps, fps=fps, duration=len(frames) / fps,
                  frame_indices=np.arange(len(frames)), total_frames=len(frames))
    encoded = adapter.encode(video)
    features, scores = encoded.features, encoded.scores
    if vision is not None:
        features = vision[0].reshape(features.shape).to(features)
        scores = vision[1].reshape(scores.shape).to(scores)
    s_patches, n, _ = features.shape
    return encoded, features, scores, compress_tokens(features, scores, budget_for(retention, s_patches * n))


@torch.no_grad()
def reference(adapter, frames: np.ndarray, fps: float, prompt: str, retention: float, max_tokens: int,
              text_offset: int | None = None, vision: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Prompt ids, first-token log-probabilities [V] and greedy tokens of stc at ``retention``
    (text_offset: see `_positions`; only to show that positions matter; vision: see the module
    docstring). Also returns transformers' own "features" [S, N, D] and "scores" [S, N], and the
    kept tokens' "source"."""
    model, tokenizer = adapter.model, adapter.processor.tokenizer
    encoded, features, scores, kept = _encode_and_compress(adapter, frames, fps, retention, vision)
    s_patches, n, _ = encoded.features.shape
    pad = "<|video_pad|>"
    before, after = prompt.split(pad)
    ids_before = tokenizer(before, add_special_tokens=False)["input_ids"]
    ids_after = tokenizer(after, add_special_tokens=False)["input_ids"]
    video_id = model.config.video_token_id
    ids = ids_before + [video_id] * kept.tokens.shape[0] + ids_after
    merge = model.config.vision_config.spatial_merge_size
    _, h, w = (int(x) for x in encoded.aux["video_grid_thw"][0])
    t_factor = float(encoded.aux["second_per_grid_ts"][0]) * model.config.vision_config.tokens_per_second
    positions = _positions(len(ids_before), (s_patches, h // merge, w // merge), t_factor, kept.source.cpu(),
                           len(ids_after), text_offset)
    core = model.model
    tokens, first = list(ids), None
    for _ in range(max_tokens):
        embeds = core.get_input_embeddings()(torch.tensor([tokens]))
        start = len(ids_before)
        embeds[0, start : start + kept.tokens.shape[0]] = kept.tokens.to(embeds)
        hidden = core.language_model(inputs_embeds=embeds, position_ids=positions[:, None]).last_hidden_state
        logprobs = model.lm_head(hidden[0, -1]).float().log_softmax(-1)
        first = logprobs if first is None else first
        tokens.append(int(logprobs.argmax()))
        positions = torch.cat([positions, (positions.max() + 1).expand(3, 1)], dim=1)
    return {"prompt_token_ids": ids, "first_logprobs": first, "token_ids": tokens[len(ids):],
            "features": encoded.features, "scores": encoded.scores, "source": kept.source.cpu()}


# -- Qwen3-VL ----------------------------------------------------------------------------------


def load_qwen3_vl(checkpoint: str):
    """stc's adapter on a Qwen3-VL or Qwen3-VL-MoE checkpoint (by its config's model_type)."""
    from transformers import AutoConfig, AutoProcessor, Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    from stc.models.qwen3_vl import Qwen3VLAdapter, Qwen3VLMoeAdapter

    moe = AutoConfig.from_pretrained(checkpoint).model_type == "qwen3_vl_moe"
    model_class, adapter = ((Qwen3VLMoeForConditionalGeneration, Qwen3VLMoeAdapter) if moe
                            else (Qwen3VLForConditionalGeneration, Qwen3VLAdapter))
    model = model_class.from_pretrained(checkpoint, dtype=torch.float32, attn_implementation="sdpa").eval()
    return adapter(model, AutoProcessor.from_pretrained(checkpoint))


@torch.no_grad()
def reference_qwen3_vl(adapter, frames: np.ndarray, fps: float, prompt: str, retention: float, max_tokens: int,
                       vision: tuple[torch.Tensor, torch.Tensor] | None = None, empty_patches: str = "keep",
                       deepstack: bool = True, positions_rule: str = "stock") -> dict:
    """Qwen3-VL: as `reference`, with the uncompressed prompt laid out by stc's adapter
    (`Qwen3VLAdapter._layout`: per temporal patch its timestamp text, markers and tokens) and
    positioned by transformers' own ``get_rope_index``; the prompt keeps every text token and the
    kept visual tokens, each at its stock position. ``empty_patches``: "keep" (what vLLM does: a
    temporal patch that keeps no token keeps its timestamp and marker pair, fixed before the
    encoder runs) or "drop" (stc's transformers adapter: they go with it). DeepStack levels carry
    the kept tokens (`stc.models.qwen3_vl.deepstack_levels`) into the first decoder layers.
    ``deepstack=False`` and ``positions_rule="contiguous"`` (0..L-1 on every row) only show that
    the parity tests could fail on those. Returns also "video_ids" (the prompt's ids with the video tokens left out, in order)."""
    from stc.models.qwen3_vl import deepstack_levels

    model, tokenizer = adapter.model, adapter.processor.tokenizer
    encoded, features, scores, kept = _encode_and_compress(adapter, frames, fps, retention, vision)
    s_patches, n, _ = encoded.features.shape
    before, after = prompt.split("<|video_pad|>")
    ids_before = tokenizer(before, add_special_tokens=False)["input_ids"]
    ids_after = tokenizer(after, add_special_tokens=False)["input_ids"]
    full_ids, segments, first = adapter._layout(ids_before, ids_after, encoded)
    full = adapter.stock_positions(full_ids, encoded).cpu()
    source = kept.source.cpu()
    video_id = model.config.video_token_id
    keep = torch.tensor(full_ids) != video_id
    keep[torch.as_tensor(first)[source // n] + source % n] = True
    if empty_patches == "drop":
        per_patch = torch.bincount(source // n, minlength=s_patches)
        for t, (a, b) in enumerate(segments):
            if per_patch[t] == 0:
                keep[a:b] = False
    elif empty_patches != "keep":
        raise ValueError(f"empty_patches: 'keep' or 'drop', got {empty_patches!r}")
    ids = [i for i, k in zip(full_ids, keep.tolist()) if k]
    positions = full[:, keep]
    if positions_rule == "contiguous":
        positions = torch.arange(positions.shape[1]).expand(3, -1)
    is_video = torch.tensor(ids) == video_id
    levels = encoded.deepstack
    stacked = deepstack_levels(levels, kept) if levels is not None and deepstack else None
    core = model.model
    tokens, first_lp = list(ids), None
    for _ in range(max_tokens):
        embeds = core.get_input_embeddings()(torch.tensor([tokens]))
        mask = torch.zeros(1, len(tokens), dtype=torch.bool)
        mask[0, : len(ids)] = is_video
        embeds[mask] = kept.tokens.to(embeds)
        rows = torch.cat([torch.arange(len(tokens))[None], positions])[:, None]  # [4, 1, L]
        hidden = core.language_model(
            inputs_embeds=embeds, position_ids=rows, visual_pos_masks=mask,
            deepstack_visual_embeds=None if stacked is None else [level.to(embeds) for level in stacked],
        ).last_hidden_state
        logprobs = model.lm_head(hidden[0, -1]).float().log_softmax(-1)
        first_lp = logprobs if first_lp is None else first_lp
        tokens.append(int(logprobs.argmax()))
        positions = torch.cat([positions, (positions.max() + 1).expand(3, 1)], dim=1)
    return {"prompt_token_ids": ids, "first_logprobs": first_lp, "token_ids": tokens[len(ids):],
            "video_ids": [i for i in ids if i != video_id], "features": encoded.features, "scores": encoded.scores,
            "source": source}
