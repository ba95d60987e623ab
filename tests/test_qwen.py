"""Qwen2.5-VL (and Qwen2-VL) end to end on tiny random models of the real architectures.

The clip is sampled to 5 frames: an odd count, which the processor pads to 3 temporal
patches by repeating the last frame. 270x480 becomes a 20x34 patch grid, so each temporal
patch has 10x17 = 170 merged tokens, and Qwen2.5-VL's window attention reorders them.
"""

import numpy as np
import pytest
import torch

import stc
from stc.results import DROPPED, MERGED_AT_K, REFILLED, SELECTED
from qwen_probes import eager_weights, positions_seen, stock_run  # tests/ is on sys.path under pytest

QUESTION = "What is happening in this video?"
NEW_TOKENS = 5
S, GH, GW = 3, 10, 17


@pytest.fixture(scope="module")
def llm():
    return stc.load("tiny-random/qwen2.5-vl")


@pytest.fixture(scope="module")
def video(gradio_clip):
    return stc.load_video(gradio_clip("world.mp4"), num_frames=5)


def _stock_inputs(llm, video):
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    prompt = llm.processor.apply_chat_template(conv, add_generation_prompt=True)
    return llm.processor(
        text=prompt, videos=[video.frames], video_metadata=[video.to_video_metadata()], return_tensors="pt"
    )


@pytest.fixture(scope="module")
def stock(llm, video):
    return stock_run(llm, video, QUESTION, NEW_TOKENS, rope_keys=("video_grid_thw", "second_per_grid_ts"))


def _hook_count(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("config", [None, stc.STCConfig(retention=1.0, inner_keep=1.0)])
def test_full_retention_logits_identical_to_stock(llm, video, stock, config):
    prep = llm.prepare(video, QUESTION, config)
    kwargs = prep.inputs.generate_kwargs
    assert prep.pruning is None
    assert torch.equal(kwargs["input_ids"], stock["inputs"]["input_ids"])
    assert torch.equal(kwargs["position_ids"][1:, 0], stock["positions"])
    with torch.no_grad(), prep.stage2():
        ours = llm.model(**kwargs).logits
    assert torch.equal(ours, stock["logits"])


def test_encoded_layout(llm, video):
    encoded, _ = llm.encode(video)
    assert encoded.features.shape == (S, GH * GW, 64)
    assert encoded.scores.shape == (S, GH * GW) and encoded.scores.dtype == torch.float32
    assert encoded.grid == (GH, GW) and encoded.frames_per_slot == 2 and encoded.extra is None
    assert encoded.aux["video_grid_thw"].tolist() == [[S, 2 * GH, 2 * GW]]
    np.testing.assert_array_equal(encoded.timestamps, video.timestamps[::2])
    # each temporal patch's scores are means of probability columns over its own queries
    assert torch.allclose(encoded.scores.sum(dim=1), torch.full((S,), 1.0 / 4), atol=1e-5)
    assert encoded.scores.std() > 0


def test_scores_are_eager_attention_received_in_feature_order(llm, video, monkeypatch):
    """Recompute the scores from the block's own eager attention weights, and check the
    window-order -> feature-order mapping on the merger's output (which is in block order)."""
    adapter, visual = llm.adapter, llm.model.model.visual
    block = visual.blocks[visual.config.fullatt_block_indexes[-1]]
    merged_block_order = []
    handle = visual.merger.register_forward_hook(lambda _m, _a, out: merged_block_order.append(out))
    try:
        with eager_weights(monkeypatch, visual, block) as weights:
            encoded = adapter.encode(video)
    finally:
        handle.remove()
    grid = encoded.aux["video_grid_thw"]
    order = adapter._merged_order(grid)
    assert not torch.equal(order, torch.arange(order.numel())), "window attention must reorder this grid"
    # the model un-permutes its merger output exactly as the adapter un-permutes the scores
    assert torch.equal(merged_block_order[0][order], encoded.features.reshape(S * GH * GW, -1))
    assert len(weights) == S  # full attention: one chunk per temporal patch
    received = torch.cat([w[0].float().mean(dim=(0, 1)) for w in weights])  # patches, block order
    expected = received.view(-1, 4).mean(dim=1)[order].view(S, GH * GW)
    torch.testing.assert_close(encoded.scores, expected, rtol=1e-4, atol=1e-9)


def test_kept_tokens_keep_their_stock_positions(llm, video, stock):
    prep = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.05))
    inputs, kept = prep.inputs, prep.kept
    positions = inputs.generate_kwargs["position_ids"][:, 0]  # [4, L]
    full = stock["positions"]
    s, total, length = inputs.visual_start, S * GH * GW, inputs.prompt_len
    assert positions.shape == (4, length)
    assert torch.equal(positions[0], torch.arange(length))  # mask row: contiguous
    assert torch.equal(positions[1:, :s], full[:, :s])
    assert torch.equal(positions[1:, s : inputs.visual_end], full[:, s + kept.source])
    assert torch.equal(positions[1:, inputs.visual_end :], full[:, s + total :])
    ids = inputs.generate_kwargs["input_ids"][0]
    vocab = llm.model.config
    assert ids[s - 1] == vocab.vision_start_token_id and ids[inputs.visual_end] == vocab.vision_end_token_id
    assert inputs.text_start == inputs.visual_end + 1
    assert int((ids == vocab.video_token_id).sum()) == kept.tokens.shape[0]


def test_full_retention_generate_and_answer_equal_stock(llm, video, stock):
    config = stc.STCConfig(retention=1.0, inner_keep=1.0)
    prep = llm.prepare(video, QUESTION, config)
    with positions_seen(llm.model) as seen:
        out = llm.model.generate(
            **prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True,
            return_dict_in_generate=True,
        )
    assert torch.equal(out.sequences, stock["sequences"])
    assert all(torch.equal(a, b) for a, b in zip(out.logits, stock["step_logits"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(seen, stock["seen"], strict=True))
    for c in (config, None):
        assert llm.answer(video, QUESTION, config=c, max_new_tokens=NEW_TOKENS).text == stock["text"]


def test_two_percent_cache_lengths_and_decode_positions(llm, video, stock):
    config = stc.STCConfig(retention=0.02)
    prep = llm.prepare(video, QUESTION, config)
    budget = config.budget(S * GH * GW)
    assert prep.kept.tokens.shape[0] == budget == 10
    assert prep.inputs.visual_end - prep.inputs.visual_start == budget
    with positions_seen(llm.model) as seen, prep.stage2():
        out = llm.model.generate(
            **prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
            return_dict_in_generate=True,
        )
    k = llm.inner_layer(config)
    removed = budget - prep.pruning.merged.keep_index.numel()
    assert removed == budget - round(0.5 * budget) == 5
    prompt = prep.inputs.prompt_len
    lengths = [layer.keys.shape[-2] for layer in out.cache.layers]
    # the last generated token is never fed back, so the cache holds prompt + new - 1
    assert lengths == [prompt + NEW_TOKENS - 1 - (removed if i >= k else 0) for i in range(llm.num_layers)]
    # decoding continues where stock generate continues for the uncompressed prompt: one past
    # the last prompt token's stock position (test_full_retention_generate_and_answer_equal_stock)
    last = stock["positions"][:, -1:]
    assert len(seen) == NEW_TOKENS
    assert all(torch.equal(step, last + j) for j, step in enumerate(seen[1:], start=1))
    assert _hook_count(llm.model) == 0


def test_baseline_after_compressed_is_fresh(llm, video, stock):
    compressed = llm.answer(video, QUESTION, config=stc.STCConfig(retention=0.02), max_new_tokens=NEW_TOKENS)
    assert compressed.stats.visual_tokens_stage1 == 10 and compressed.stats.visual_tokens_stage2 == 5
    assert _hook_count(llm.model) == 0
    baseline = llm.answer(video, QUESTION, config=None, max_new_tokens=NEW_TOKENS)
    assert baseline.text == stock["text"]
    prep = llm.prepare(video, QUESTION, None)
    with torch.no_grad():
        assert torch.equal(llm.model(**prep.inputs.generate_kwargs).logits, stock["logits"])
    assert _hook_count(llm.model) == 0


def test_provenance(llm, video):
    answer = llm.answer(video, QUESTION, config=stc.STCConfig(retention=0.05), max_new_tokens=2)
    p = answer.provenance
    assert p.status.shape == p.cluster.shape == p.slot.shape == (S, GH, GW)
    assert p.frames_per_slot == 2
    np.testing.assert_array_equal(p.timestamps, video.timestamps[::2])
    assert set(np.unique(p.status)) <= {DROPPED, SELECTED, REFILLED, MERGED_AT_K}
    assert p.tokens_per_frame.shape == (S,) and p.tokens_per_frame.sum() == answer.stats.visual_tokens_stage2
    assert answer.stats.visual_tokens == S * GH * GW


# -- Qwen2-VL: the same adapter without window attention or timed temporal positions ------------


@pytest.fixture(scope="module")
def qwen2_vl():
    """A tiny Qwen2-VL (2 ViT blocks) sharing the tiny Qwen2.5-VL's tokenizer and text sizes."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    from stc.models import tiny
    from stc.models.processors import build_processor, image_processor, video_processor

    ref = tiny.tiny_config(tiny.TINY_QWEN2_5_VL)
    text = ref.get_text_config().to_dict()
    keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rope_parameters", "max_position_embeddings", "rms_norm_eps", "hidden_act",
            "bos_token_id", "eos_token_id", "pad_token_id")
    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config={k: text[k] for k in keep},
        image_token_id=ref.image_token_id,
        video_token_id=ref.video_token_id,
        vision_start_token_id=ref.vision_start_token_id,
        vision_end_token_id=ref.vision_end_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2VLForConditionalGeneration._from_config(config, attn_implementation="sdpa").eval()
    processor = build_processor(
        Qwen2VLProcessor,
        image_processor=image_processor("qwen2_vl"), tokenizer=tiny.tiny_tokenizer(tiny.TINY_QWEN2_5_VL),
        video_processor=video_processor("qwen2_vl"), chat_template=tiny._QWEN_VL_CHAT_TEMPLATE,
    )
    return stc.wrap(model, processor, model_id="tiny-random/qwen2-vl")


def test_qwen2_vl_full_retention_identical_and_compressed_positions(qwen2_vl, video):
    llm = qwen2_vl
    inputs = _stock_inputs(llm, video)
    with torch.no_grad():
        stock_logits = llm.model(**inputs).logits
    prep = llm.prepare(video, QUESTION, stc.STCConfig(retention=1.0, inner_keep=1.0))
    with torch.no_grad():
        assert torch.equal(llm.model(**prep.inputs.generate_kwargs).logits, stock_logits)
    full, _ = llm.model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
    )
    prep = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.05))
    positions = prep.inputs.generate_kwargs["position_ids"][1:, 0]
    s, end = prep.inputs.visual_start, prep.inputs.visual_end
    assert torch.equal(positions[:, s:end], full[:, 0, s + prep.kept.source])
    assert torch.equal(positions[:, end:], full[:, 0, s + S * GH * GW :])
    config = stc.STCConfig(retention=0.05)
    answer = llm.answer(video, QUESTION, config=config, max_new_tokens=3)
    budget = config.budget(S * GH * GW)
    assert answer.stats.visual_tokens_stage1 == budget
    assert answer.stats.visual_tokens_stage2 == round(0.5 * budget)
    assert answer.provenance.status.shape == (S, GH, GW)
    assert _hook_count(llm.model) == 0


def test_the_family_counts_its_visual_tokens_without_encoding(llm, video):
    """`FamilyAdapter.visual_tokens` (what same-cost-more-frames asks) is what encoding gives:
    the processor's grid for the whole clip, not a per-frame count."""
    assert llm.adapter.frame_tokens() is None
    assert llm.adapter.visual_tokens(video) == llm.encode(video)[0].num_tokens
