"""The contract every registered method meets, written once and parametrized over
`stc.list_methods()` (a new method is covered by registering it), plus what each peer promises.

Pure-function level: exact budget for every 1 <= budget <= S*N, strictly increasing source,
a consistent assignment, determinism, identity at 100%. End to end on the tiny LLaVA-OneVision
with 8 frames of a real clip: exact token counts before and after layer K, original position
ids, identity at 100% retention, and a baseline afterwards identical to a fresh baseline.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stc
from stc.config import budget_for
from stc.methods._common import apportion, even_split
from stc.methods import stage1_then_keep
from stc.methods.fastv import fastv_counts, fastv_keep
from stc.methods.fastvid import dynamic_segments
from stc.methods.holitom import static_windows
from stc.methods.uniform import pooling_regions
from stc.models.inner import InnerContext

QUESTION = "What is happening in this video?"
METHODS = stc.list_methods()
STAGE1 = [m for m in METHODS if stc.get_method(m).stage1 is not None]
COMPRESSING = [m for m in METHODS if m != "none"]
CONFIG_FIELDS = set(stc.STCConfig.__dataclass_fields__)


def _config(method: str, retention: float, **changes) -> stc.STCConfig:
    return stc.STCConfig(retention=retention, method=method, **changes)


def _full(method: str) -> stc.STCConfig:
    """The config that makes ``method`` keep everything (stage 2 off where it has one)."""
    config = _config(method, 1.0)
    counts = stc.get_method(method).counts(config, 100)
    return config if counts.after_layer == 100 else config.replace(inner_keep=1.0)


# -- the registry ---------------------------------------------------------------------------
def test_registry_lists_the_peers():
    assert METHODS[:3] == ["none", "stc", "stc-stage1"]
    assert {"uniform", "random", "fastv", "visionzip", "fastvid", "holitom"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_method_describes_itself(name):
    m = stc.get_method(name)
    assert m.name == name and m.paper and m.summary
    assert set(m.uses) <= CONFIG_FIELDS
    if m.inner is not None:
        assert m.default_layer is not None and 0 <= m.default_layer(28) < 28
    for retention in (0.01, 0.5, 1.0):
        first, after = m.counts(_config(name, retention), 1000)
        assert 1 <= after <= first <= 1000
        assert (first == 1000) == (m.stage1 is None or retention == 1.0)
        assert (after < first) == (m.inner is not None and not (retention == 1.0 and name == "fastv"))


def test_layer_k_defaults():
    assert stc.get_method("fastv").default_layer(28) == 3
    assert stc.get_method("holitom").default_layer(28) == 18 == stc.get_method("stc").default_layer(28)


# -- stage 1 as pure functions ----------------------------------------------------------------
@st.composite
def videos(draw):
    s, gh, gw = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):  # few distinct values: ties and duplicates everywhere
        features = torch.randint(-1, 2, (s, gh * gw, d), generator=g).float()
        scores = torch.randint(0, 3, (s, gh * gw), generator=g).float()
    else:  # smooth in time, so temporal methods find static tokens and long segments
        base = torch.randn(1, gh * gw, d, generator=g)
        features = base + draw(st.sampled_from([0.0, 0.05, 1.0])) * torch.randn(s, gh * gw, d, generator=g)
        scores = torch.rand(s, gh * gw, generator=g)
    budget = draw(st.integers(1, s * gh * gw))
    return features, scores, budget, (gh, gw)


def _check_compressed(out, features, budget):
    s, n, d = features.shape
    assert out.tokens.shape == (budget, d) and out.tokens.dtype == features.dtype
    assert out.source.shape == (budget,) and out.selected.shape == (budget,)
    assert out.source.dtype == torch.long and out.assignment.dtype == torch.long
    assert bool((out.source[1:] > out.source[:-1]).all()), "source strictly increasing"
    assert 0 <= int(out.source.min()) and int(out.source.max()) < s * n
    a = out.assignment
    assert a.shape == (s * n,) and bool(((a >= -1) & (a < budget)).all())
    # every output stands for at least the token at its own position
    assert torch.equal(a[out.source], torch.arange(budget))
    flat = features.reshape(s * n, d)
    sel = out.selected
    assert torch.equal(out.tokens[sel], flat[out.source[sel]]), "selected tokens are kept as they are"
    assert bool((torch.bincount(a[a >= 0], minlength=budget)[sel] == 1).all())
    assert bool(torch.isfinite(out.tokens).all())


@pytest.mark.parametrize("name", STAGE1)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(video=videos())
def test_stage1_contract(name, video):
    features, scores, budget, grid = video
    method = stc.get_method(name)
    config = _config(name, 0.5)
    out = method.compress(features, scores, budget, grid=grid, config=config)
    _check_compressed(out, features, budget)
    again = method.compress(features.clone(), scores.clone(), budget, grid=grid, config=config)
    for field in ("tokens", "source", "assignment", "selected"):
        assert torch.equal(getattr(out, field), getattr(again, field)), "deterministic"


@pytest.mark.parametrize("name", STAGE1)
def test_stage1_full_budget_is_identity(name):
    g = torch.Generator().manual_seed(1)
    features, scores = torch.randn(3, 6, 4, generator=g), torch.rand(3, 6, generator=g)
    out = stc.get_method(name).compress(features, scores, 18, grid=(2, 3), config=_config(name, 1.0))
    assert torch.equal(out.tokens, features.reshape(18, 4))
    assert torch.equal(out.source, torch.arange(18)) and torch.equal(out.assignment, torch.arange(18))
    assert bool(out.selected.all())


@pytest.mark.parametrize("name", STAGE1)
def test_stage1_rejects_bad_budgets(name):
    features, scores = torch.zeros(2, 4, 3), torch.zeros(2, 4)
    for bad in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="budget"):
            stc.get_method(name).compress(features, scores, bad, grid=(2, 2), config=_config(name, 0.5))


# -- what the peers promise -------------------------------------------------------------------
@given(total=st.integers(0, 60), parts=st.integers(1, 12))
def test_even_split(total, parts):
    counts = even_split(total, parts)
    assert sum(counts) == total and max(counts) - min(counts) <= 1


@given(data=st.data())
def test_apportion_is_exact_and_capped(data):
    g = data.draw(st.integers(1, 6))
    capacity = data.draw(st.lists(st.integers(0, 9), min_size=g, max_size=g))
    weights = [c if data.draw(st.booleans()) else data.draw(st.integers(0, 5)) for c in capacity]
    room = sum(c for c, w in zip(capacity, weights) if w > 0)
    total = data.draw(st.integers(0, room))
    counts = apportion(total, weights, capacity)
    assert sum(counts) == total and all(0 <= c <= cap for c, cap in zip(counts, capacity))
    assert all(c == 0 for c, w in zip(counts, weights) if w == 0)


@given(gh=st.integers(1, 7), gw=st.integers(1, 7), data=st.data())
def test_pooling_regions_partition_the_grid(gh, gw, data):
    k = data.draw(st.integers(1, gh * gw))
    labels, centre = pooling_regions(gh, gw, k)
    sizes = torch.bincount(labels, minlength=k)
    assert labels.min() == 0 and labels.max() == k - 1 and bool((sizes > 0).all())
    assert torch.equal(labels[centre], torch.arange(k)) and bool((centre.diff() > 0).all())
    assert int(sizes.max()) <= 2 * math.ceil(gh * gw / k) + gh + gw  # nearly equal areas


def test_uniform_pools_each_frame_evenly():
    features = torch.arange(2 * 16, dtype=torch.float32).view(2, 16, 1)
    uniform = stc.get_method("uniform")
    out = uniform.compress(features, torch.zeros(2, 16), 8, grid=(4, 4), config=_config("uniform", 0.25))
    # 4 regions of 2x2 per frame, each the mean of its patches, at its centre patch
    assert torch.equal(out.source // 16, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    assert torch.allclose(out.tokens[:4, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))
    assert not bool(out.selected.any())


def test_random_is_seeded_not_global():
    features, scores = torch.randn(4, 9, 3), torch.rand(4, 9)
    m = stc.get_method("random")
    torch.manual_seed(123)
    a = m.compress(features, scores, 5, grid=(3, 3), config=_config("random", 0.1))
    torch.manual_seed(456)
    b = m.compress(features, scores, 5, grid=(3, 3), config=_config("random", 0.1))
    assert torch.equal(a.source, b.source) and bool(a.selected.all())


def test_visionzip_keeps_dominant_tokens_by_score():
    g = torch.Generator().manual_seed(0)
    features, scores = torch.randn(2, 100, 8, generator=g), torch.rand(2, 100, generator=g)
    out = stc.get_method("visionzip").compress(features, scores, 128, grid=(10, 10), config=_config("visionzip", 0.64))
    # 64 per frame = 54 dominant (the top scores) + 10 contextual merged tokens
    for t in range(2):
        in_frame = out.source[out.source // 100 == t]
        dominant = set((in_frame[out.selected[out.source // 100 == t]] % 100).tolist())
        assert set(torch.topk(scores[t], 54).indices.tolist()) <= dominant
        assert in_frame.numel() == 64 and int((~out.selected[out.source // 100 == t]).sum()) <= 10


def test_fastvid_segments_cut_at_scene_changes():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    frames = torch.cat([a.expand(5, 16), b.expand(7, 16)])
    assert dynamic_segments(frames, min_segments=1, tau=0.9) == [5, 7]
    # c = 3 adds the two least similar transitions (ties: earliest) to the scene cut
    assert sum(dynamic_segments(frames, min_segments=3, tau=0.9)) == 12
    assert len(dynamic_segments(frames, min_segments=3, tau=0.9)) == 3


def test_holitom_merges_a_static_scene_into_one_segment():
    g = torch.Generator().manual_seed(0)
    still = torch.randn(1, 9, 4, generator=g).expand(6, 9, 4).clone()
    still[:, 0] = torch.randn(6, 4, generator=g)  # one moving position
    segments, _ = static_windows(still, tau=0.8)
    assert segments.bounds == [(0, 5)]
    assert segments.static[0].tolist() == [False] + [True] * 8
    scores = torch.rand(6, 9, generator=g)
    out = stc.get_method("holitom").compress(still, scores, 10, grid=(3, 3), config=_config("holitom", 0.2))
    # 8 static tubes + 6 moving tokens = 14 units for 10 slots, apportioned by size: the tubes
    # become 6 DPC-kNN clusters placed in frame 0, 4 frames keep their moving token
    merged = out.source[~out.selected]
    assert merged.numel() == 6 and bool((merged < 9).all())
    assert out.source[out.selected].tolist() == [0, 9, 18, 27]
    tubes = torch.arange(6 * 9).view(6, 9)[:, 1:].reshape(-1)
    assert bool((out.assignment[tubes] >= 0).all())


def test_fastv_keeps_what_the_last_token_attends_to():
    visual = torch.randn(10, 4)
    attn = torch.tensor([0.1, 0.9, 0.0, 0.5, 0.2, 0.8, 0.0, 0.0, 0.3, 0.05])
    merged = fastv_keep(visual, attn, 3)
    assert merged.keep_index.tolist() == [1, 3, 5]
    assert torch.equal(merged.tokens, visual[[1, 3, 5]])
    assert merged.assignment.tolist() == [-1, 0, -1, 1, -1, 2, -1, -1, -1, -1]


def test_holitom_inner_merges_into_kept_by_last_token_attention():
    visual = torch.randn(8, 4)
    ctx = InnerContext(visual, torch.randn(3, 4), torch.rand(3, 8), torch.arange(8.0), keep_count=4)
    merged = stc.get_method("holitom").inner(_config("holitom", 0.1))(ctx)
    assert merged.keep_index.tolist() == [4, 5, 6, 7] and bool((merged.assignment >= 0).all())


# -- end to end on the tiny LLaVA-OneVision ---------------------------------------------------
@pytest.fixture(scope="module")
def fresh_baseline(video):
    fresh = stc.load("tiny-random/llava-onevision")
    prep = fresh.prepare(video, QUESTION)
    return fresh.model(**prep.inputs.generate_kwargs).logits


def _no_hooks(model):
    return all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("retention", [0.01, 0.02, 0.1, 0.5])
@pytest.mark.parametrize("name", COMPRESSING)
def test_exact_token_counts_and_positions(llm, video, name, retention):
    method, config = stc.get_method(name), _config(name, retention)
    total = 8 * 196
    prep = llm.prepare(video, QUESTION, config)
    n_stage1 = prep.kept.tokens.shape[0]
    # FastV's retention counts the tokens left after layer K; everyone else's those entering the LLM.
    inside = name == "fastv"
    assert n_stage1 == (total if method.stage1 is None or inside else budget_for(retention, total))
    # the LLM sees every kept token at its original position id, or (methods whose official code
    # renumbers the compressed sequence) the sequence renumbered 0, 1, 2, ...
    pos = prep.inputs.generate_kwargs["position_ids"][0]
    s = prep.inputs.visual_start
    assert torch.equal(pos[:s], torch.arange(s))
    after = pos[prep.inputs.visual_end :]
    if config.position_rule == "contiguous":
        assert torch.equal(pos, torch.arange(prep.inputs.prompt_len))
    else:
        assert torch.equal(pos[s : prep.inputs.visual_end], s + prep.kept.source)
        assert torch.equal(after, torch.arange(s + total, s + total + after.numel()))
    # tokens after layer K (a method with a counts rule of its own, FlashVID: what that rule says)
    expected = budget_for(retention, total) if inside else (
        n_stage1 if method.inner is None else max(1, math.floor(config.inner_keep * n_stage1 + 0.5))
    )
    if method.counts_rule not in (stage1_then_keep, fastv_counts):
        expected = method.counts(config, total).after_layer
    if prep.pruning is None:
        assert expected == n_stage1
        return
    with prep.stage2():
        llm.model(**prep.inputs.generate_kwargs)
    assert prep.pruning.merged.keep_index.numel() == expected
    assert prep.pruning.plan.layer == llm.inner_layer(config)
    assert _no_hooks(llm.model)


@pytest.mark.parametrize("name", COMPRESSING)
def test_full_retention_is_the_baseline(llm, video, name, fresh_baseline):
    prep = llm.prepare(video, QUESTION, _full(name))
    assert prep.pruning is None and prep.kept.tokens.shape[0] == 8 * 196
    assert torch.equal(llm.model(**prep.inputs.generate_kwargs).logits, fresh_baseline)


@pytest.mark.parametrize("name", COMPRESSING)
def test_baseline_after_method_equals_fresh_baseline(llm, video, name, fresh_baseline):
    answer = llm.answer(video, QUESTION, config=_config(name, 0.05), max_new_tokens=2)
    assert answer.stats.visual_tokens_stage2 < 8 * 196
    prep = llm.prepare(video, QUESTION)
    assert torch.equal(llm.model(**prep.inputs.generate_kwargs).logits, fresh_baseline)
    assert _no_hooks(llm.model)


def test_fastv_flops_count_the_tokens_after_layer_k(llm, video):
    config = _config("fastv", 0.02)
    st_ = llm.answer(video, QUESTION, config=config, max_new_tokens=2).stats
    assert (st_.visual_tokens_stage1, st_.visual_tokens_stage2, st_.inner_layer) == (1568, 31, 3)
    assert st_.flops == stc.flops(llm, 1568, inner_layer=3, inner_keep=31 / 1568)
    assert st_.compress_seconds == 0.0


# -- python -m stc.bench ----------------------------------------------------------------------
def _bench_rows(capsys, gradio_clip, *flags):
    from stc import bench

    common = ["--model", "tiny-random/llava-onevision", "--video", str(gradio_clip("world.mp4")), "--quick"]
    bench.main([*common, "--max-new-tokens", "2", *flags])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    return [line.split("|")[1].strip() for line in lines[1:]]  # lines[0] is the header


def test_bench_defaults_are_baseline_vs_stc(capsys, gradio_clip):
    assert _bench_rows(capsys, gradio_clip) == ["baseline (100%)", "stc 10%/5%", "stc 2%/1%"]


def test_bench_compares_every_method(capsys, gradio_clip):
    names = _bench_rows(capsys, gradio_clip, "--methods", *METHODS, "--retention", "0.1", "0.02")
    assert names[0] == "baseline (100%)" and len(names) == 1 + 2 * len(COMPRESSING)
    assert {"stc 2%/1%", "stc-stage1 2%", "fastv 2% after K=3", "holitom 10%/5%", "visionzip 10%"} <= set(names)


# -- every method on the tiny Qwen3-VL (DeepStack, timestamps between temporal patches) and the
# tiny Qwen3.5 (no DeepStack; linear-attention layers, so K moves to read a full-attention layer) --
@pytest.fixture(scope="module", params=["tiny-random/qwen3-vl", "tiny-random/qwen3.5"])
def qwen3(request, gradio_clip):
    llm = stc.load(request.param)
    video = stc.load_video(gradio_clip("world.mp4"), num_frames=5)  # 3 temporal patches x 120 tokens
    prep = llm.prepare(video, QUESTION)
    return llm, video, llm.model(**prep.inputs.generate_kwargs).logits


@pytest.mark.parametrize("name", COMPRESSING)
def test_every_method_on_qwen3(qwen3, name):
    llm, video, baseline = qwen3
    total, config = 360, _config(name, 0.05)
    counts = stc.get_method(name).counts(config, total)
    prep = llm.prepare(video, QUESTION, config)
    assert prep.kept.tokens.shape[0] == counts.stage1
    assert prep.inputs.num_visual == counts.stage1
    levels = prep.inputs.generate_kwargs["mm_encoder_outputs"]["video"].deepstack_features
    if llm.adapter.model_type == "qwen3_vl":
        assert [level[0].shape[0] for level in levels] == [counts.stage1] * 3  # the same tokens at every level
    else:
        assert levels is None
    if prep.pruning is not None:
        with prep.stage2():
            llm.model(**prep.inputs.generate_kwargs)
        assert prep.pruning.merged.keep_index.numel() == counts.after_layer
        assert prep.pruning.plan.layer >= llm.adapter.min_inner_layer
        assert prep.pruning.plan.source_layer in (llm.adapter.attention_layers() or range(llm.num_layers))
    assert _no_hooks(llm.model)
    full = llm.prepare(video, QUESTION, _full(name))
    assert full.pruning is None
    if _full(name).position_rule == "original":
        assert torch.equal(llm.model(**full.inputs.generate_kwargs).logits, baseline)
    else:  # official code renumbers the sequence: on mRoPE that is not the stock prompt even at 100%
        positions = full.inputs.generate_kwargs["position_ids"][:, 0]
        assert torch.equal(positions, torch.arange(positions.shape[-1]).expand(4, -1))
