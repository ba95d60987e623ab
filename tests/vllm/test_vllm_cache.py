"""stc under vLLM's default settings on real clips: prefix caching on, repeats, concurrency,
chunked prefill on and off; every answer equal to the transformers reference.

The failure this guards against (issue 21): a request whose prompt prefix, video included, was
cached by an earlier request skips the vision encoder, and vLLM recomputes mRoPE positions only
for media it encodes; the text after the video then kept vLLM's start positions, sized for the
uncompressed video, and the answer changed (cockatoo: 130-token prompt, 128 cached). stc's
model now starts every request with the positions its encoder output would give.

One child process (tests/vllm/engine.py, chat mode) runs three engines on the same requests:
4 clips x 2 questions, sent together, then each alone, then together again. vLLM's vision
features are saved and checked against transformers' (float precision); the reference then
compresses vLLM's features (reference.py: float-level ties), and every answer of every round
and engine must match it.
"""

from __future__ import annotations

import json

import torch

from conftest import ENGINES, QUESTIONS  # the run and references fixtures live there too


def test_clips_differ_in_length_and_size(references):
    grids = {name: tuple(ref["vllm"]["grid"]) for name, ref in references.items()}
    assert len({g[0] for g in grids.values()}) == len(grids), grids  # temporal patches
    assert len({g[1:] for g in grids.values()}) >= 2, grids  # merged grids
    sizes = {name: tuple(ref["source_size"]) for name, ref in references.items()}
    assert len(set(sizes.values())) == len(sizes), sizes  # decoded frame sizes


def test_vllm_vision_features_and_scores_match_transformers(references):
    for name, ref in references.items():
        own_f = ref["own"]["features"].reshape(ref["vllm"]["features"].shape)
        assert (own_f - ref["vllm"]["features"]).abs().max() < 1e-3 * own_f.abs().max(), name
        own_s = ref["own"]["scores"].reshape(-1)
        assert ((own_s - ref["vllm"]["scores"]).abs() / own_s.abs()).max() < 1e-3, name


def test_vllm_keeps_what_compress_tokens_keeps(references):
    for name, ref in references.items():
        for q in QUESTIONS:
            assert torch.equal(ref["questions"][q]["source"], ref["vllm"]["source"]), name


def test_every_engine_and_round_matches_the_reference(run, references):
    for engine in ENGINES:
        for round_, results in zip(run["rounds"], run["results"][engine["name"]]):
            assert len(results) == len(round_)
            for request, got in zip(round_, results):
                want = references[request["clip"]]["questions"][request["question"]]
                where = (engine["name"], request["clip"], request["question"], got["num_cached_tokens"])
                assert got["prompt_token_ids"] == want["prompt_token_ids"], where
                diff = max(abs(lp - float(want["first_logprobs"][int(tok)])) for tok, lp in got["first_logprobs"].items())
                assert diff < 2e-3, (*where, diff)
                assert got["token_ids"] == want["token_ids"][: len(got["token_ids"])], where


def test_repeats_hit_the_prefix_cache_past_the_video(run, references):
    """The case that failed: a repeat whose cached prefix covers the whole video (so the
    encoder does not run for it), under vLLM's defaults."""
    video_id = json.loads((run["checkpoint"] / "config.json").read_text())["video_token_id"]
    for engine in ENGINES:
        past = []
        for round_, results in zip(run["rounds"][1:], run["results"][engine["name"]][1:]):
            for request, got in zip(round_, results):
                last_video = max(i for i, t in enumerate(got["prompt_token_ids"]) if t == video_id)
                if got["num_cached_tokens"] > last_video:
                    past.append(request["clip"])
        assert past, engine["name"]
    assert "cockatoo" in [r["clip"] for round_, results in zip(run["rounds"][1:], run["results"]["defaults"][1:])
                          for r, got in zip(round_, results) if got["num_cached_tokens"] >= 128]
