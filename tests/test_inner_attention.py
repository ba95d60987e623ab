"""Whose attention a layer-K strategy sees: FastV and HoliTom read layer K-1's, as their official
code does; stc's own stage 2 reads layer K's (the paper's choice).

Checked against an independent computation: the same weights run with eager attention and
``output_attentions=True`` on the same prompt, on the tiny LLaVA-OneVision and Qwen2.5-VL.
"""

import dataclasses

import pytest
import torch

import stc
from stc.methods.fastv import fastv_keep
from stc.models.inner import InnerPruning, attention_layer_for

QUESTION = "What is happening in this video?"


@pytest.fixture(scope="module", params=["llava-onevision", "qwen2.5-vl"])
def case(request, gradio_clip):
    """(the sdpa model, a video, the same weights under eager attention)."""
    if request.param == "llava-onevision":
        llm, video = request.getfixturevalue("llm"), request.getfixturevalue("video")
    else:
        llm, video = stc.load("tiny-random/qwen2.5-vl"), stc.load_video(gradio_clip("world.mp4"), num_frames=5)
    eager = stc.load(f"tiny-random/{request.param}")
    eager.model.set_attn_implementation("eager")
    return llm, video, eager


@torch.no_grad()
def _eager_attention(eager, prep) -> list[torch.Tensor]:
    """Per layer, the [Nt, Nv] heads-averaged attention of the text rows to the visual span,
    from eager attention on the full (unpruned) prompt."""
    out = eager.model(**prep.inputs.generate_kwargs, output_attentions=True)
    i = prep.inputs
    return [a[0].float().mean(dim=0)[i.text_start :, i.visual_start : i.visual_end] for a in out.attentions]


@torch.no_grad()
def _run_spied(llm, prep):
    """Run the prefill under ``prep``'s plan; return the InnerContext its strategy received."""
    seen = []

    def spy(ctx):
        seen.append(ctx)
        return prep.pruning.plan.strategy(ctx)

    pruning = InnerPruning(llm.adapter.decoder_layers(), dataclasses.replace(prep.pruning.plan, strategy=spy))
    with pruning:
        llm.model(**prep.inputs.generate_kwargs)
    assert len(seen) == 1
    return seen[0], pruning


def _no_hooks(model) -> bool:
    return all(not m._forward_pre_hooks for m in model.modules())


def test_attention_layer_for():
    assert attention_layer_for(3, "previous") == 2 and attention_layer_for(3, "same") == 3
    assert attention_layer_for(0, "previous") == 0  # no layer -1: layer 0's own
    with pytest.raises(ValueError, match="inner_attention"):
        attention_layer_for(3, "next")
    assert stc.get_method("fastv").inner_attention == stc.get_method("holitom").inner_attention == "previous"
    assert stc.get_method("stc").inner_attention == "same"


@pytest.mark.parametrize("method", ["fastv", "holitom", "stc"])
def test_strategy_sees_the_declared_layers_attention(case, method):
    """FastV and HoliTom get layer K-1's attention (eager, computed inside K-1), not layer K's;
    stc gets layer K's."""
    llm, video, eager = case
    prep = llm.prepare(video, QUESTION, stc.STCConfig(method=method, retention=0.1))
    k = prep.pruning.plan.layer
    assert k >= 1
    source = k - 1 if method != "stc" else k
    assert prep.pruning.plan.attention_layer == source
    ctx, _ = _run_spied(llm, prep)
    ref = _eager_attention(eager, prep)
    torch.testing.assert_close(ctx.text_attn, ref[source], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ctx.last_attn, ref[source][-1], rtol=1e-4, atol=1e-6)
    other = k if method != "stc" else k - 1
    assert not torch.allclose(ctx.last_attn, ref[other][-1], rtol=1e-2, atol=1e-5)


@torch.no_grad()
def test_fastv_keeps_what_layer_k_minus_1_ranks_first(case):
    """The kept set is the top of layer K-1's last-token attention, and differs from the one
    layer K's attention (stc's earlier choice) would give."""
    llm, video, eager = case
    prep = llm.prepare(video, QUESTION, stc.STCConfig(method="fastv", retention=0.05))
    with prep.stage2():
        llm.model(**prep.inputs.generate_kwargs)
    kept = prep.pruning.merged.keep_index
    k, n = prep.pruning.plan.layer, prep.pruning.plan.keep_count
    ref = _eager_attention(eager, prep)
    visual = torch.zeros(ref[0].shape[1], 1)
    assert torch.equal(kept, fastv_keep(visual, ref[k - 1][-1], n).keep_index)
    assert not torch.equal(kept, fastv_keep(visual, ref[k][-1], n).keep_index)


@torch.no_grad()
def test_hooks_are_removed_and_the_baseline_is_untouched(llm, video):
    """Layer K-1 carries a hook only inside the block; each block records afresh; a baseline
    afterwards equals a fresh model's."""
    config = stc.STCConfig(method="fastv", retention=0.05)
    prep = llm.prepare(video, QUESTION, config)
    layers = llm.adapter.decoder_layers()
    k = prep.pruning.plan.layer
    with prep.stage2():
        assert len(layers[k - 1]._forward_pre_hooks) == 1 and not layers[k - 2]._forward_pre_hooks
        first = llm.model(**prep.inputs.generate_kwargs).logits[0, -1]
    kept_first = prep.pruning.merged.keep_index.clone()
    with prep.stage2():  # a fresh prefill needs layer K-1's attention recorded again
        second = llm.model(**prep.inputs.generate_kwargs).logits[0, -1]
    assert torch.equal(first, second) and torch.equal(prep.pruning.merged.keep_index, kept_first)
    assert _no_hooks(llm.model)

    out = llm.answer(video, QUESTION, config=config, max_new_tokens=3)
    assert out.stats.new_tokens >= 1 and _no_hooks(llm.model)
    fresh = stc.load("tiny-random/llava-onevision")
    baseline = llm.prepare(video, QUESTION).inputs.generate_kwargs  # (the encoder is not patched)
    assert torch.equal(llm.model(**baseline).logits, fresh.model(**baseline).logits)


def test_k0_falls_back_to_layer_0s_own_attention(case):
    """With K = 0 there is no layer K-1: FastV sees layer 0's attention, and only layer 0's
    pruning hook is added in front of the layers."""
    llm, video, eager = case
    prep = llm.prepare(video, QUESTION, stc.STCConfig(method="fastv", retention=0.05, inner_layer=0))
    assert prep.pruning.plan.layer == prep.pruning.plan.attention_layer == 0
    ctx, pruning = _run_spied(llm, prep)
    ref = _eager_attention(eager, prep)
    torch.testing.assert_close(ctx.last_attn, ref[0][-1], rtol=1e-4, atol=1e-6)
    with pruning:
        assert len(llm.adapter.decoder_layers()[0]._forward_pre_hooks) == 1
    assert _no_hooks(llm.model)
