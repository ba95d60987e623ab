"""LLaVA-OneVision end to end on the tiny random model of the real architecture."""

import pytest
import torch

import stc
from stc.results import DROPPED, MERGED_AT_K, REFILLED, SELECTED

QUESTION = "What is happening in this video?"


def _stock_inputs(llm, video):
    conv = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    prompt = llm.processor.apply_chat_template(conv, add_generation_prompt=True)
    return llm.processor(text=prompt, videos=[video.frames], return_tensors="pt")


def _no_hooks(model):
    # stc patches only through forward pre-hooks (transformers adds its own forward hooks)
    return all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("config", [None, stc.STCConfig(retention=1.0, inner_keep=1.0)])
def test_full_retention_logits_identical_to_stock(llm, video, config):
    stock = llm.model(**_stock_inputs(llm, video)).logits
    prep = llm.prepare(video, QUESTION, config)
    with prep.stage2():
        ours = llm.model(**prep.inputs.generate_kwargs).logits
    assert torch.equal(ours, stock)


def test_full_retention_answer_equals_stock_generate(llm, video):
    stock_ids = llm.model.generate(**_stock_inputs(llm, video), max_new_tokens=6, do_sample=False)
    stock_text = llm.processor.tokenizer.decode(stock_ids[0, -6:], skip_special_tokens=True).strip()
    ours = llm.answer(video, QUESTION, config=stc.STCConfig(retention=1.0, inner_keep=1.0), max_new_tokens=6)
    assert ours.text == stock_text


def test_two_percent_cache_lengths_follow_the_method(llm, video):
    config = stc.STCConfig(retention=0.02)
    prep = llm.prepare(video, QUESTION, config)
    total = 8 * 196
    budget = config.budget(total)
    assert prep.kept.tokens.shape[0] == budget == 31
    new = 4
    with prep.stage2():
        out = llm.model.generate(
            **prep.inputs.generate_kwargs, max_new_tokens=new, min_new_tokens=new, do_sample=False,
            return_dict_in_generate=True,
        )
    cache = out.cache
    k = llm.inner_layer(config)
    kept2 = round(0.5 * budget)
    removed = budget - kept2
    prompt = prep.inputs.prompt_len
    # stage 1: 8 * 196 visual tokens became `budget` placeholders (+ the newline)
    ids = prep.inputs.generate_kwargs["input_ids"][0]
    assert int((ids == llm.model.config.video_token_id).sum()) == budget + 1
    assert prompt == ids.numel() == llm.prepare(video, QUESTION, None).inputs.prompt_len - (total - budget)
    assert prep.inputs.visual_end - prep.inputs.visual_start == budget
    lengths = [cache.layers[i].keys.shape[-2] for i in range(llm.num_layers)]
    expected = [prompt + new - 1 if i < k else prompt - removed + new - 1 for i in range(llm.num_layers)]
    assert lengths == expected
    assert prep.pruning.merged.keep_index.numel() == kept2
    assert _no_hooks(llm.model)


def test_stage2_really_changes_the_computation(llm, video):
    on = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1))
    off = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1, inner_keep=1.0))
    assert torch.equal(on.inputs.generate_kwargs["input_ids"], off.inputs.generate_kwargs["input_ids"])
    with on.stage2():
        a = llm.model(**on.inputs.generate_kwargs).logits[0, -1]
    b = llm.model(**off.inputs.generate_kwargs).logits[0, -1]
    assert not torch.allclose(a, b)


def test_kept_tokens_keep_original_positions(llm, video):
    prep = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.05))
    pos = prep.inputs.generate_kwargs["position_ids"][0]
    s = prep.inputs.visual_start
    assert torch.equal(pos[:s], torch.arange(s))
    assert torch.equal(pos[s : prep.inputs.visual_end], s + prep.kept.source)
    # the newline and the question continue as if nothing had been removed
    after = pos[prep.inputs.visual_end :]
    assert torch.equal(after, torch.arange(s + 8 * 196, s + 8 * 196 + after.numel()))


def test_baseline_after_compressed_equals_fresh_baseline(llm, video):
    fresh = stc.load("tiny-random/llava-onevision")
    expected = fresh.answer(video, QUESTION, max_new_tokens=6)
    llm.answer(video, QUESTION, config=stc.STCConfig(retention=0.02), max_new_tokens=6)
    again = llm.answer(video, QUESTION, max_new_tokens=6)
    assert again.text == expected.text
    prep_a, prep_b = llm.prepare(video, QUESTION), fresh.prepare(video, QUESTION)
    assert torch.equal(
        llm.model(**prep_a.inputs.generate_kwargs).logits, fresh.model(**prep_b.inputs.generate_kwargs).logits
    )
    assert _no_hooks(llm.model)


def test_features_are_encoded_once_per_video(llm, video):
    llm.clear_cache()
    first = llm.answer(video, QUESTION, max_new_tokens=2)
    second = llm.answer(video, QUESTION, config=stc.STCConfig(retention=0.02), max_new_tokens=2)
    assert not first.stats.vision_cached and second.stats.vision_cached
    assert second.stats.vision_seconds == first.stats.vision_seconds


def test_stats_and_provenance(llm, video):
    config = stc.STCConfig(retention=0.02)
    ans = llm.answer(video, QUESTION, config=config, max_new_tokens=4)
    st = ans.stats
    assert (st.visual_tokens, st.visual_tokens_stage1, st.visual_tokens_stage2) == (1568, 31, 16)
    assert st.flops < st.flops_baseline
    assert st.flops == stc.flops(llm, 31, inner_layer=llm.inner_layer(config), inner_keep=16 / 31)
    assert st.flops_baseline == stc.flops(llm, 1568)
    for name in ("compress_seconds", "prefill_seconds", "ttft_seconds", "decode_tokens_per_second"):
        assert getattr(st, name) > 0, name
    assert st.peak_memory_bytes > 0 and st.peak_memory_kind == "process_rss"
    prov = ans.provenance
    assert prov.status.shape == (8, 14, 14) and prov.frames_per_slot == 1
    assert int(prov.tokens_per_frame.sum()) == 16
    codes = set(prov.status.reshape(-1).tolist())
    assert codes <= {DROPPED, SELECTED, REFILLED, MERGED_AT_K}
    # every selected/refilled patch is represented by a token that survived stage 2
    merged = llm.prepare(video, QUESTION, config)
    with merged.stage2():
        llm.model(**merged.inputs.generate_kwargs)
    survivors = set(merged.pruning.merged.keep_index.tolist())
    slot = prov.slot.reshape(-1)
    status = prov.status.reshape(-1)
    for s, code in zip(slot.tolist(), status.tolist()):
        if code in (SELECTED, REFILLED):
            assert s in survivors
        if code == MERGED_AT_K:
            assert s not in survivors
        if code == DROPPED:
            assert s == -1
    # cluster ids mark exactly the patches whose stage-1 token is a refilled cluster
    refilled_slot = torch.tensor([s >= 0 and not bool(merged.kept.selected[s]) for s in slot.tolist()])
    assert torch.equal(torch.from_numpy(prov.cluster.reshape(-1) >= 0), refilled_slot)


def test_answer_rejects_bad_arguments(llm, video):
    with pytest.raises(ValueError, match="question"):
        llm.answer(video, "   ")
    with pytest.raises(ValueError, match="max_new_tokens"):
        llm.answer(video, QUESTION, max_new_tokens=0)
    with pytest.raises(ValueError, match="config"):
        llm.answer(video, QUESTION, config={"retention": 0.1})


@pytest.mark.parametrize("layer", [0, 2])
def test_stage2_with_materialised_masks_matches_sdpa(llm, video, layer):
    """Eager attention passes 4D masks to every layer: they must be sliced like the rest,
    in prefill and in every decoding step (K = 0 sizes decoding masks from a short cache)."""
    eager = stc.load("tiny-random/llava-onevision")
    eager.model.set_attn_implementation("eager")
    config = stc.STCConfig(retention=0.05, inner_layer=layer)
    logits = []
    for model in (llm, eager):
        prep = model.prepare(video, QUESTION, config)
        with prep.stage2():
            out = model.model.generate(
                **prep.inputs.generate_kwargs, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                output_logits=True, return_dict_in_generate=True,
            )
        logits.append(torch.stack(out.logits))
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def test_question_limits(llm, video):
    with pytest.raises(ValueError, match="too long"):
        llm.answer(video, "why? " * 2000)
    ok = llm.answer(video, "  " + QUESTION + "\n", max_new_tokens=2)
    assert ok.stats.new_tokens >= 1


def test_out_of_memory_is_reported_and_the_model_stays_usable(llm, video, monkeypatch):
    real = llm.model.generate

    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(llm.model, "generate", boom)
    with pytest.raises(stc.OutOfMemory, match="fewer frames"):
        llm.answer(video, QUESTION, max_new_tokens=2)
    monkeypatch.setattr(llm.model, "generate", real)
    again = llm.answer(video, QUESTION, max_new_tokens=2)
    assert again.stats.new_tokens >= 1 and not again.stats.vision_cached  # cache was dropped


def test_generation_time_is_bounded(llm, video):
    out = llm.answer(video, QUESTION, max_new_tokens=4000, max_seconds=0.05)
    assert out.stats.new_tokens < 4000
    assert any("limit" in n for n in out.notes)


def test_fewer_frames_than_asked_is_noted(llm, make_clip):
    path = make_clip("three.mp4", 3)
    out = llm.answer(path, QUESTION, num_frames=16, max_new_tokens=2)
    assert out.provenance.status.shape[0] == 3
    assert any("3 frames" in n for n in out.notes)


def test_stage2_can_be_entered_again_and_nested(llm, video):
    """One prepared request, run twice: the second prefill prunes afresh (same tokens, same
    logits), and a nested block shares the outer one's hooks."""
    prep = llm.prepare(video, QUESTION, stc.STCConfig(retention=0.1))
    kwargs = prep.inputs.generate_kwargs
    with prep.stage2():
        first = llm.model(**kwargs).logits[0, -1]
    kept_first = prep.pruning.merged.keep_index.clone()
    with prep.stage2():
        hooks = sum(len(m._forward_pre_hooks) for m in llm.model.modules())
        with prep.stage2():
            assert sum(len(m._forward_pre_hooks) for m in llm.model.modules()) == hooks
        assert prep.pruning.active  # the inner exit left the outer block's hooks in place
        second = llm.model(**kwargs).logits[0, -1]
    assert torch.equal(first, second)
    assert torch.equal(prep.pruning.merged.keep_index, kept_first)
    assert _no_hooks(llm.model) and not prep.pruning.active


def test_the_family_counts_its_visual_tokens_without_encoding(llm, video):
    """`FamilyAdapter.visual_tokens`: a fixed grid per frame, what encoding gives."""
    per_frame = llm.adapter.frame_tokens()
    assert llm.adapter.visual_tokens(video) == video.num_frames * per_frame == llm.encode(video)[0].num_tokens
