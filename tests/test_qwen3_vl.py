"""Qwen3-VL and Qwen3-VL-MoE end to end on tiny random models of the real architectures.

The clip is sampled to 5 frames, which the processor pads to 3 temporal patches; 270x480
becomes a 16x30 patch grid (Qwen3-VL's 32-pixel merge units), so each temporal patch has
8x15 = 120 merged tokens, written after its "<t seconds>" timestamp.
"""

import numpy as np
import pytest
import torch

import stc
from stc.compress import Compressed
from stc.models.qwen3_vl import deepstack_levels
from qwen_probes import eager_weights, positions_seen, stock_run  # tests/ is on sys.path under pytest

QUESTION = "What is happening in this video?"
NEW_TOKENS = 5
S, GH, GW = 3, 8, 15
N = GH * GW
FAMILIES = ["tiny-random/qwen3-vl", "tiny-random/qwen3-vl-moe"]


@pytest.fixture(scope="module", params=FAMILIES)
def llm(request):
    return stc.load(request.param)


@pytest.fixture(scope="module")
def video(gradio_clip):
    return stc.load_video(gradio_clip("world.mp4"), num_frames=5)


@pytest.fixture(scope="module")
def stock(llm, video):
    return stock_run(llm, video, QUESTION, NEW_TOKENS, processor_kwargs={"do_sample_frames": False})


def _hook_count(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_supported_and_loaded(llm):
    assert {"qwen3_vl", "qwen3_vl_moe"} <= set(stc.supported_types())
    assert llm.adapter.model_type == llm.model.config.model_type
    assert not llm.adapter.streamable
    assert llm.adapter.min_inner_layer == 3  # three DeepStack levels


@pytest.mark.parametrize("config", [None, stc.STCConfig(retention=1.0, inner_keep=1.0)])
def test_full_retention_logits_identical_to_stock(llm, video, stock, config):
    prep = llm.prepare(video, QUESTION, config)
    kwargs = prep.inputs.generate_kwargs
    assert prep.pruning is None
    assert torch.equal(kwargs["input_ids"], stock["inputs"]["input_ids"])  # timestamps and markers included
    assert torch.equal(kwargs["position_ids"][1:, 0], stock["positions"])
    with torch.no_grad(), prep.stage2():
        assert torch.equal(llm.model(**kwargs).logits, stock["logits"])


def test_full_retention_generate_and_answer_equal_stock(llm, video, stock):
    config = stc.STCConfig(retention=1.0, inner_keep=1.0)
    prep = llm.prepare(video, QUESTION, config)
    with positions_seen(llm.model) as seen:
        out = llm.model.generate(**prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
    assert torch.equal(out.sequences, stock["sequences"])
    assert all(torch.equal(a, b) for a, b in zip(out.logits, stock["step_logits"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(seen, stock["seen"], strict=True))
    for c in (config, None):
        assert llm.answer(video, QUESTION, config=c, max_new_tokens=NEW_TOKENS).text == stock["text"]


def test_encoded_layout(llm, video, stock):
    encoded, _ = llm.encode(video)
    assert encoded.features.shape == (S, N, 64) and encoded.grid == (GH, GW) and encoded.frames_per_slot == 2
    assert encoded.aux["video_grid_thw"].tolist() == [[S, 2 * GH, 2 * GW]]
    assert encoded.deepstack.shape == (3, S, N, 64)
    # the timestamps are the ones the processor writes
    text = llm.processor.tokenizer.decode(stock["inputs"]["input_ids"][0])
    assert [f"<{t:.1f} seconds>" in text for t in encoded.aux["stamps"]] == [True] * S
    np.testing.assert_array_equal(encoded.timestamps, video.timestamps[::2])
    assert torch.allclose(encoded.scores.sum(dim=1), torch.full((S,), 1.0 / 4), atol=1e-5)
    assert encoded.scores.std() > 0
    assert encoded.nbytes > encoded.features.numel() * 4 * 4  # the DeepStack levels count


def test_scores_are_eager_attention_received_of_the_last_block(llm, video, monkeypatch):
    visual = llm.model.model.visual  # qwen3_vl's or qwen3_vl_moe's
    with eager_weights(monkeypatch, visual, visual.blocks[-1]) as weights:
        encoded = llm.adapter.encode(video)
    assert len(weights) == S  # one full-attention chunk per temporal patch
    received = torch.cat([w[0].float().mean(dim=(0, 1)) for w in weights])
    torch.testing.assert_close(encoded.scores, received.view(-1, 4).mean(dim=1).view(S, N), rtol=1e-4, atol=1e-9)


def _kept(encoded, source: list[int]) -> Compressed:
    source = torch.tensor(source)
    assignment = torch.full((S * N,), -1)
    assignment[source] = torch.arange(source.numel())
    flat = encoded.features.reshape(S * N, -1)
    return Compressed(tokens=flat[source], source=source, assignment=assignment,
                      selected=torch.ones(source.numel(), dtype=torch.bool))


def test_a_patch_keeping_nothing_drops_its_timestamp_and_the_rest_keep_stock_positions(llm, video, stock):
    encoded, _ = llm.encode(video)
    source = [N + 3, N + 50, 2 * N + 7]  # nothing of patch 0
    inputs = llm.adapter.prompt_inputs(QUESTION, encoded, _kept(encoded, source))
    ids = inputs.generate_kwargs["input_ids"][0]
    full_ids = stock["inputs"]["input_ids"][0]
    cfg = llm.model.config
    pads = (full_ids == cfg.video_token_id).nonzero()[:, 0]
    first_pad = pads[0].item()
    # the full prompt with patch 0's "<t seconds><|vision_start|>...<|vision_end|>" cut out and
    # only the kept pads of patches 1 and 2
    starts = (full_ids == cfg.vision_start_token_id).nonzero()[:, 0].tolist()  # template's, then one per patch
    ends = (full_ids == cfg.vision_end_token_id).nonzero()[:, 0].tolist()
    mask = torch.ones(full_ids.numel(), dtype=torch.bool)
    mask[starts[0] + 1 : ends[0] + 1] = False  # patch 0: timestamp, markers, tokens
    mask[pads] = False
    mask[pads[torch.tensor(source)]] = True
    keep = mask.nonzero()[:, 0]
    assert torch.equal(ids, full_ids[keep])
    assert llm.processor.tokenizer.decode(ids).count("seconds>") == 2
    positions = inputs.generate_kwargs["position_ids"][:, 0]
    assert torch.equal(positions[0], torch.arange(ids.numel()))
    assert torch.equal(positions[1:], stock["positions"][:, keep])
    assert torch.equal(inputs.visual_index, (ids == cfg.video_token_id).nonzero()[:, 0])
    assert inputs.num_visual == 3 and first_pad < int(pads[N])
    assert ids[inputs.text_start - 1] == cfg.vision_end_token_id and ids[inputs.text_start - 2] == cfg.vision_end_token_id


def test_deepstack_levels_carry_the_same_tokens(llm, video):
    encoded, _ = llm.encode(video)
    levels = encoded.deepstack
    config = stc.STCConfig(retention=0.05)
    kept = stc.get_method("stc").compress(encoded.features, encoded.scores, config.budget(S * N),
                                          grid=encoded.grid, config=config)
    assert bool((~kept.selected).any()), "the budget must refill clusters for this test"
    # the rule applied to the features the LLM reads reproduces stage 1's own tokens
    torch.testing.assert_close(deepstack_levels(encoded.features[None], kept)[0], kept.tokens, rtol=0, atol=1e-6)
    out = deepstack_levels(levels, kept)
    flat = levels.reshape(3, S * N, -1)
    sel = kept.selected
    assert torch.equal(out[:, sel], flat[:, kept.source[sel]])
    j = int((~sel).nonzero()[0])
    members = (kept.assignment == j).nonzero()[:, 0]
    torch.testing.assert_close(out[:, j], flat[:, members].mean(dim=1))
    # and these are what generate hands the LLM
    prep = llm.prepare(video, QUESTION, config)
    handed = prep.inputs.generate_kwargs["mm_encoder_outputs"]["video"].deepstack_features
    assert len(handed) == 3 and all(torch.equal(h[0], o) for h, o in zip(handed, out))
    everything = _kept(encoded, list(range(S * N)))
    assert torch.equal(deepstack_levels(levels, everything), flat)


def test_two_percent_exact_budget_cache_lengths_and_decode_positions(llm, video, stock):
    config = stc.STCConfig(retention=0.02)
    prep = llm.prepare(video, QUESTION, config)
    budget = config.budget(S * N)
    assert prep.kept.tokens.shape[0] == budget == 7
    assert int((prep.inputs.generate_kwargs["input_ids"] == llm.model.config.video_token_id).sum()) == budget
    with positions_seen(llm.model) as seen, prep.stage2():
        out = llm.model.generate(**prep.inputs.generate_kwargs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                 do_sample=False, return_dict_in_generate=True)
    k = llm.inner_layer(config)
    assert k == 4 >= llm.adapter.min_inner_layer
    removed = budget - prep.pruning.merged.keep_index.numel()
    assert removed == budget - round(0.5 * budget)
    prompt = prep.inputs.prompt_len
    lengths = [layer.keys.shape[-2] for layer in out.cache.layers]
    assert lengths == [prompt + NEW_TOKENS - 1 - (removed if i >= k else 0) for i in range(llm.num_layers)]
    last = stock["positions"][:, -1:]
    assert all(torch.equal(step, last + j) for j, step in enumerate(seen[1:], start=1))
    assert _hook_count(llm.model) == 0


def test_stage2_keeps_the_text_between_patches(llm, video):
    """Stage 2 drops only visual tokens: the timestamps and markers stay, at their positions."""
    config = stc.STCConfig(retention=0.1)
    prep = llm.prepare(video, QUESTION, config)
    with prep.stage2():
        llm.model(**prep.inputs.generate_kwargs)
    keep = prep.pruning.keep
    visual = prep.inputs.visual_index
    dropped = visual[~torch.isin(torch.arange(visual.numel()), prep.pruning.merged.keep_index)]
    assert torch.equal(keep, torch.tensor([i for i in range(prep.inputs.prompt_len) if i not in set(dropped.tolist())]))
    answer = llm.answer(video, QUESTION, config=config, max_new_tokens=2)
    assert answer.stats.visual_tokens_stage1 == config.budget(S * N)
    assert answer.stats.visual_tokens_stage2 == round(0.5 * config.budget(S * N))
    assert answer.stats.text_tokens == prep.inputs.prompt_len - answer.stats.visual_tokens_stage1
    assert answer.provenance.tokens_per_frame.sum() == answer.stats.visual_tokens_stage2


def test_k_stays_after_deepstack(llm, video, monkeypatch):
    with pytest.raises(ValueError, match="inner_layer must be >= 3"):
        llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1, inner_layer=2))
    config = stc.STCConfig(retention=0.1, method="fastv")
    answer = llm.answer(video, QUESTION, config=config, max_new_tokens=2)
    assert answer.stats.inner_layer == 3 and answer.stats.visual_tokens_stage2 == config.budget(S * N)
    # a default below the family's first allowed layer is raised to it
    monkeypatch.setattr(type(llm.adapter), "min_inner_layer", property(lambda self: 5))
    stage2 = stc.STCConfig(retention=0.1)
    assert stc.get_method("stc").layer(stage2, llm.num_layers) == 4 and llm.inner_layer(stage2) == 5
    assert llm.answer(video, QUESTION, config=stage2, max_new_tokens=2).stats.inner_layer == 5


def test_baseline_after_compressed_is_fresh(llm, video, stock):
    llm.answer(video, QUESTION, config=stc.STCConfig(retention=0.02), max_new_tokens=2)
    assert _hook_count(llm.model) == 0
    prep = llm.prepare(video, QUESTION, None)
    with torch.no_grad():
        assert torch.equal(llm.model(**prep.inputs.generate_kwargs).logits, stock["logits"])


def test_flops_of_the_new_configs():
    from stc.flop_count import llm_dims

    moe = llm_dims("tiny-random/qwen3-vl-moe")
    assert (moe.hidden_size, moe.intermediate_size, moe.num_hidden_layers) == (64, 2 * 32, 6)  # 2 active experts
    assert llm_dims("tiny-random/qwen3-vl").intermediate_size == 128
    assert llm_dims("Qwen/Qwen3-VL-30B-A3B-Instruct").intermediate_size == 8 * 768
    # 32 frames of 448x448 on Qwen3-VL-8B: 16 temporal patches x 196 tokens
    assert stc.flops("Qwen/Qwen3-VL-8B-Instruct", 16 * 196) > stc.flops("Qwen/Qwen3-VL-8B-Instruct", 63)


def test_lmms_plugin_takes_it(video, gradio_clip):
    from types import SimpleNamespace

    from stc.lmms_plugin import STC

    model = STC.create_from_arg_string("pretrained=tiny-random/qwen3-vl,method=stc,retention=0.1,max_frames_num=5",
                                       {"batch_size": 1, "device": "cpu"})
    world = str(gradio_clip("world.mp4"))
    model.task_dict = {"videomme": {"test": [{"visual": [world]}]}}
    gen = {"max_new_tokens": 2, "do_sample": False, "until": ["\n\n"]}
    request = SimpleNamespace(args=("What is shown?", gen, lambda doc: doc["visual"], 0, "videomme", "test"))
    out = model.generate_until([request])
    direct = model.llm.answer(video, "What is shown?", config=stc.STCConfig(retention=0.1), max_new_tokens=2)
    assert out == [direct.text]
