"""Qwen3.5 and Qwen3.5-MoE end to end on tiny random models of the real architectures.

What Qwen3.5 shares with Qwen3-VL (processor, timestamps between temporal patches, interleaved
mRoPE, vision tower) is exercised as in tests/test_qwen3_vl.py; what is new is checked here: no
DeepStack, an LLM of gated-delta-net (linear-attention) and full-attention layers in the real
3:1 pattern (layers 3 and 7 of 8 attend), gated q projections with partial rotary. The clip is
sampled to 5 frames: 3 temporal patches of 8x15 = 120 merged tokens.
"""

import dataclasses

import pytest
import torch

import stc
from stc.models.inner import InnerPruning
from qwen_probes import eager_weights, positions_seen, stock_run  # tests/ is on sys.path under pytest

QUESTION = "What is happening in this video?"
NEW_TOKENS = 5
S, N = 3, 120
FULL = [3, 7]  # the full-attention layers of the tiny models
FAMILIES = ["tiny-random/qwen3.5", "tiny-random/qwen3.5-moe"]


@pytest.fixture(scope="module", params=FAMILIES)
def llm(request):
    return stc.load(request.param)


@pytest.fixture(scope="module")
def video(gradio_clip):
    return stc.load_video(gradio_clip("world.mp4"), num_frames=5)


@pytest.fixture(scope="module")
def stock(llm, video):
    return stock_run(llm, video, QUESTION, NEW_TOKENS, processor_kwargs={"do_sample_frames": False},
                     min_new_tokens=NEW_TOKENS)


def _no_hooks(model) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_supported_and_loaded(llm):
    assert {"qwen3_5", "qwen3_5_moe"} <= set(stc.supported_types())
    assert llm.adapter.model_type == llm.model.config.model_type
    assert type(llm.processor).__name__ == "Qwen3VLProcessor"  # what Qwen3.5 checkpoints name
    assert type(llm.processor.tokenizer).__name__ == "Qwen3_5Tokenizer"
    types = llm.model.config.text_config.layer_types
    assert [i for i, t in enumerate(types) if t == "full_attention"] == FULL == llm.adapter.attention_layers()
    assert llm.adapter.min_inner_layer == 0 and not llm.adapter.streamable  # no DeepStack


@pytest.mark.parametrize("config", [None, stc.STCConfig(retention=1.0, inner_keep=1.0)])
def test_full_retention_logits_identical_to_stock(llm, video, stock, config):
    prep = llm.prepare(video, QUESTION, config)
    kwargs = prep.inputs.generate_kwargs
    assert prep.pruning is None
    assert torch.equal(kwargs["input_ids"], stock["inputs"]["input_ids"])  # timestamps, think block and all
    assert torch.equal(kwargs["position_ids"][1:, 0], stock["positions"])
    assert kwargs["mm_encoder_outputs"]["video"].deepstack_features is None
    with torch.no_grad():
        assert torch.equal(llm.model(**kwargs).logits, stock["logits"])


def test_full_retention_generate_and_answer_equal_stock(llm, video, stock):
    config = stc.STCConfig(retention=1.0, inner_keep=1.0)
    prep = llm.prepare(video, QUESTION, config)
    with positions_seen(llm.model) as seen:
        out = llm.model.generate(**prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences, stock["sequences"])
    assert all(torch.equal(a, b) for a, b in zip(out.logits, stock["step_logits"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(seen, stock["seen"], strict=True))
    for c in (config, None):
        text = llm.answer(video, QUESTION, config=c, max_new_tokens=NEW_TOKENS).text
        assert text == stock["text"]


def test_encoded_layout_and_scores(llm, video, monkeypatch):
    encoded, _ = llm.encode(video)
    assert encoded.features.shape == (S, N, 64) and encoded.grid == (8, 15) and encoded.frames_per_slot == 2
    assert encoded.deepstack is None and encoded.nbytes >= encoded.features.numel() * 4
    # the scores: eager attention received in the tower's last block, over each 2x2 merge unit
    visual = llm.model.model.visual
    with eager_weights(monkeypatch, visual, visual.blocks[-1]) as weights:
        scores = llm.adapter.encode(video).scores
    assert len(weights) == S
    received = torch.cat([w[0].float().mean(dim=(0, 1)) for w in weights])
    torch.testing.assert_close(scores, received.view(-1, 4).mean(dim=1).view(S, N), rtol=1e-4, atol=1e-9)


def test_two_percent_exact_budget_caches_and_decode_positions(llm, video, stock):
    """Full-attention layers >= K cache fewer keys; linear-attention layers keep a state of the
    stock size (fixed, whatever the length); decoding continues at the stock positions."""
    config = stc.STCConfig(retention=0.02)
    prep = llm.prepare(video, QUESTION, config)
    budget = config.budget(S * N)
    assert prep.kept.tokens.shape[0] == budget == 7
    assert int((prep.inputs.generate_kwargs["input_ids"] == llm.model.config.video_token_id).sum()) == budget
    with positions_seen(llm.model) as seen, prep.stage2():
        out = llm.model.generate(**prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False, return_dict_in_generate=True)
    k = llm.inner_layer(config)
    assert k == 7  # round(18/28 x 8) = 5 reads a linear-attention layer: moved to the next full one
    removed = budget - prep.pruning.merged.keep_index.numel()
    assert removed == budget - round(0.5 * budget)
    prompt = prep.inputs.prompt_len
    for i, (layer, ref) in enumerate(zip(out.cache.layers, stock["cache"].layers, strict=True)):
        if i in FULL:
            assert layer.keys.shape[-2] == prompt + NEW_TOKENS - 1 - (removed if i >= k else 0)
        else:
            assert getattr(layer, "keys", None) is None  # no keys: a state
            assert [s.shape for s in layer.recurrent_states.values()] == [s.shape for s in ref.recurrent_states.values()]
            assert [s.shape for s in layer.conv_states.values()] == [s.shape for s in ref.conv_states.values()]
    last = stock["positions"][:, -1:]
    assert all(torch.equal(step, last + j) for j, step in enumerate(seen[1:], start=1))
    assert _no_hooks(llm.model)


def test_k_reads_a_full_attention_layer(llm, video):
    fastv = stc.STCConfig(retention=0.1, method="fastv")
    assert llm.inner_layer(fastv) == 4  # FastV's K = 3 would read layer 2 (linear): K = 4 reads layer 3
    assert llm.inner_layer(stc.STCConfig(retention=0.1, inner_layer=3)) == 3
    assert llm.inner_layer(fastv.replace(inner_layer=4)) == 4
    # HoliTom's default K = 5 reads layer 4 and no later K < 8 reads a full layer: the last one before
    assert llm.inner_layer(stc.STCConfig(retention=0.1, method="holitom")) == 4
    with pytest.raises(ValueError, match=r"inner_layer 5 is not valid for stc on qwen3_5.*valid inner_layer values: \[3, 7\]"):
        llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1, inner_layer=5))
    with pytest.raises(ValueError, match=r"reads the attention of layer K-1.*values: \[4\]"):
        llm.prepare(video, QUESTION, fastv.replace(inner_layer=3))
    plan = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1)).pruning.plan
    with pytest.raises(ValueError, match="decoder layer 5 has no softmax attention"):
        InnerPruning(llm.adapter.decoder_layers(), dataclasses.replace(plan, layer=5, attention_layer=5))
    answer = llm.answer(video, QUESTION, config=fastv, max_new_tokens=2)
    assert answer.stats.inner_layer == 4 and answer.stats.visual_tokens_stage2 == fastv.budget(S * N)
    assert _no_hooks(llm.model)


@pytest.fixture(scope="module")
def eager(llm):
    model = stc.load(llm.model.config._name_or_path)
    model.model.set_attn_implementation("eager")
    return model


@pytest.mark.parametrize("method, layer", [("stc", 3), ("stc", 7), ("fastv", 4)])
def test_stage2_attention_is_the_gated_layers_eager_attention(llm, video, eager, method, layer):
    """The text rows' attention a strategy sees equals eager attention of that full-attention
    layer (gated q projection, q/k norms, partial rotary), and the linear-attention layers after
    K run over the shorter sequence."""
    config = stc.STCConfig(retention=0.1, method=method, inner_layer=layer)
    prep = llm.prepare(video, QUESTION, config)
    seen, lengths = [], {}

    def spy(ctx):
        seen.append(ctx)
        return prep.pruning.plan.strategy(ctx)

    layers = llm.adapter.decoder_layers()
    pruning = InnerPruning(layers, dataclasses.replace(prep.pruning.plan, strategy=spy))
    with torch.no_grad(), pruning:  # registered after stage 2's hooks: they see what each layer runs on
        handles = [m.register_forward_pre_hook(lambda m, a, kw, i=i: lengths.__setitem__(i, a[0].shape[1]),
                                               with_kwargs=True) for i, m in enumerate(layers)]
        try:
            llm.model(**prep.inputs.generate_kwargs)
        finally:
            for h in handles:
                h.remove()
    with torch.no_grad():
        attentions = eager.model(**prep.inputs.generate_kwargs, output_attentions=True).attentions
    source = prep.pruning.plan.source_layer
    i = prep.inputs
    expected = attentions[FULL.index(source)][0].float().mean(dim=0)[i.text_start:, i.visual_index]
    torch.testing.assert_close(seen[0].text_attn, expected, rtol=1e-4, atol=1e-6)
    short = i.prompt_len - (i.num_visual - pruning.merged.keep_index.numel())
    assert [lengths[j] for j in range(len(layers))] == [i.prompt_len] * layer + [short] * (len(layers) - layer)


@pytest.mark.parametrize("layer", FULL)
def test_decoding_masks_with_eager_attention(eager, video, layer):
    """With a materialised (eager) mask, decoding after stage 2 at K = the first full-attention
    layer (whose short cache sizes the masks) and at a later one answers as sdpa does."""
    config = stc.STCConfig(retention=0.1, inner_layer=layer)
    sdpa = stc.load(eager.model.config._name_or_path)
    texts = [m.answer(video, QUESTION, config=config, max_new_tokens=4).text for m in (eager, sdpa)]
    assert texts[0] == texts[1]


def test_flops_of_the_hybrid_configs():
    from stc.flop_count import llm_dims

    dense, moe = llm_dims("tiny-random/qwen3.5"), llm_dims("tiny-random/qwen3.5-moe")
    assert dense.linear_attention_layers == moe.linear_attention_layers == (0, 1, 2, 4, 5, 6)
    assert (dense.intermediate_size, moe.intermediate_size) == (128, 2 * 32 + 32)  # 2 active experts + shared
    d, m, n = 64, 128, 100
    layer = 4 * n * d**2 + 2 * n * d * m
    assert stc.flops(dense, n, decode_tokens=0) == 8 * layer + 2 * (2 * n**2 * d)  # n^2 in 2 of 8 layers
    big = llm_dims("Qwen/Qwen3.5-35B-A3B")
    assert (big.hidden_size, big.intermediate_size, big.num_hidden_layers) == (2048, 8 * 512 + 512, 40)
    assert len(big.linear_attention_layers) == 30 and 3 not in big.linear_attention_layers
    # 32 frames of 448x448 on Qwen3.5-9B, 2%/1% with K = 23 (the first full layer from 21)
    assert stc.flops("Qwen/Qwen3.5-9B", 63, inner_layer=23, inner_keep=0.5) < stc.flops("Qwen/Qwen3.5-9B", 16 * 196)


def test_lmms_plugin_and_eval_take_it(video, gradio_clip, tmp_path):
    import json
    from types import SimpleNamespace

    from stc.eval.cli import main
    from stc.lmms_plugin import STC

    model = STC.create_from_arg_string("pretrained=tiny-random/qwen3.5,method=stc,retention=0.1,max_frames_num=5",
                                       {"batch_size": 1, "device": "cpu"})
    world = str(gradio_clip("world.mp4"))
    model.task_dict = {"videomme": {"test": [{"visual": [world]}]}}
    gen = {"max_new_tokens": 2, "do_sample": False, "until": ["\n\n"]}
    request = SimpleNamespace(args=("What is shown?", gen, lambda doc: doc["visual"], 0, "videomme", "test"))
    direct = model.llm.answer(video, "What is shown?", config=stc.STCConfig(retention=0.1), max_new_tokens=2)
    assert model.generate_until([request]) == [direct.text]

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "w", "video": world, "question": "Which planet?",
                                    "options": ["A. Earth", "B. Mars"], "answer": "A"}) + "\n")
    out = tmp_path / "out"
    assert main([str(manifest), "--model", "tiny-random/qwen3.5-moe", "--methods", "stc", "--retention", "0.1",
                 "--frames", "4", "--max-new-tokens", "2", "--out", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["method"], r.get("error")) for r in records] == [("stc", None)]
