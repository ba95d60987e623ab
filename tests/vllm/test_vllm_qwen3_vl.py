"""stc's Qwen3-VL classes inside vLLM's CPU build, on tiny random-weight Qwen3-VL and Qwen3-VL-MoE
checkpoints written to disk here (`stc.integrations.vllm.tiny.write_checkpoint(model_type=...)`:
DeepStack taps after 3 vision blocks, interleaved mRoPE, the real processors; the MoE one's LLM
has 4 experts, 2 per token). Every test that runs an engine or the reference runs for both
families (`FAMILIES`).

One child process (tests/vllm/engine.py) runs two engines on 3 videos (2, 4 and 8 temporal
patches), each request twice (the repeat hits the prefix cache past the video): vLLM's defaults,
and small blocks with chunked prefill (cache hits and prefill chunks end inside the video, among
its timestamps). Every answer must match a transformers reference (reference.py,
`reference_qwen3_vl`: transformers' vision tower and positions, `stc.compress_tokens`, the same
tokens at every DeepStack level) whose prompt is what vLLM builds: a temporal patch that keeps
no token keeps its timestamp text (vLLM fixes it before the encoder runs), where stc's
transformers adapter drops it; the difference that makes is measured below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stc.arith import budget_for
from stc.integrations.vllm import ARCHITECTURES, hf_overrides
from stc.integrations.vllm.tiny import make_video, write_checkpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from engine import FPS, video_request  # noqa: E402
from reference import load_qwen3_vl, reference_qwen3_vl  # noqa: E402

FAMILIES = ["qwen3_vl", "qwen3_vl_moe"]
RETENTION = 0.1
FRAMES = [4, 8, 16]  # 2, 4, 8 temporal patches of 7 x 7 merged tokens
TOKENS_PER_PATCH = 49
MAX_TOKENS = 6
ENGINES = [
    {"name": "defaults", "kwargs": {}},
    {"name": "chunked-32", "kwargs": {"block_size": 32, "enable_chunked_prefill": True, "max_num_batched_tokens": 64}},
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """family -> its tiny checkpoint, written on first use."""
    root, written = tmp_path_factory.mktemp("vllm-qwen3"), {}

    def get(family: str) -> Path:
        if family not in written:
            written[family] = write_checkpoint(root / f"tiny-{family}", model_type=family)
        return written[family]

    return get


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def checkpoint(checkpoints, family) -> Path:
    return checkpoints(family)


@pytest.fixture(scope="module")
def run(checkpoint, family) -> dict:
    overrides = hf_overrides(RETENTION, model_type=family)
    spec = {"checkpoint": str(checkpoint), "frames": FRAMES, "max_tokens": MAX_TOKENS, "logprobs": 5, "repeats": 2,
            "engines": [{**e, "hf_overrides": overrides} for e in ENGINES]}
    proc = subprocess.run([sys.executable, "-P", str(HERE / "engine.py"), json.dumps(spec)], capture_output=True,
                          text=True, timeout=900, cwd=checkpoint.parent, env={**os.environ})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("STC-RESULT ")), None)
    assert proc.returncode == 0 and line, f"engine run failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(line.removeprefix("STC-RESULT "))


@pytest.fixture(scope="module")
def adapter(checkpoint):
    return load_qwen3_vl(str(checkpoint))


@pytest.fixture(scope="module")
def references(adapter) -> list[dict]:
    out = []
    for frames in FRAMES:
        video = make_video(frames, seed=frames)
        out.append(reference_qwen3_vl(adapter, video, FPS, video_request(video)["prompt"], RETENTION, MAX_TOKENS))
    return out


def _video_id(checkpoint: Path) -> int:
    return json.loads((checkpoint / "config.json").read_text())["video_token_id"]


def test_placeholder_holds_the_budget_and_every_timestamp(run, references, checkpoint):
    video_id = _video_id(checkpoint)
    for frames, got, want in zip(FRAMES, run["defaults"][0], references):
        budget = budget_for(RETENTION, frames // 2 * TOKENS_PER_PATCH)
        assert sum(1 for i in got["prompt_token_ids"] if i == video_id) == budget, frames
        # every text token (timestamps and markers of every temporal patch included), in order
        assert [i for i in got["prompt_token_ids"] if i != video_id] == want["video_ids"], frames


def test_every_engine_and_repeat_matches_the_reference(run, references):
    for engine in ENGINES:
        for round_, results in enumerate(run[engine["name"]]):
            for frames, got, want in zip(FRAMES, results, references):
                where = (engine["name"], round_, frames, got["num_cached_tokens"])
                diff = max(abs(lp - float(want["first_logprobs"][int(tok)])) for tok, lp in got["first_logprobs"].items())
                assert diff < 2e-3, (*where, diff)
                n = len(got["token_ids"])
                assert got["token_ids"] == want["token_ids"][:n], where
                assert n == MAX_TOKENS, where  # the tiny model's greedy tokens never stop early here


def test_repeats_hit_the_prefix_cache_past_the_video(run, checkpoint):
    """The case the start positions exist for: a repeat whose cached prefix covers the whole
    video, so the encoder does not run for it (parity above holds for it too)."""
    video_id = _video_id(checkpoint)
    for engine in ENGINES:
        past = [got["num_cached_tokens"] > max(i for i, t in enumerate(got["prompt_token_ids"]) if t == video_id)
                for got in run[engine["name"]][1]]
        assert any(past), engine["name"]


def test_a_patch_keeps_no_token_and_its_timestamp_stays(references, adapter):
    """The case where vLLM and stc's transformers adapter differ: a temporal patch that keeps zero
    tokens. vLLM keeps its timestamp text (the parity reference does too); the adapter drops it.
    The difference is measured here (first-token log-probabilities), not hidden."""
    empty = [(frames, ref) for frames, ref in zip(FRAMES, references)
             if len(set((ref["source"] // TOKENS_PER_PATCH).tolist())) < frames // 2]
    assert empty, "no video with an empty temporal patch: lower RETENTION"
    frames, ref = empty[-1]
    video = make_video(frames, seed=frames)
    dropped = reference_qwen3_vl(adapter, video, FPS, video_request(video)["prompt"], RETENTION, 1, empty_patches="drop")
    assert len(dropped["prompt_token_ids"]) < len(ref["prompt_token_ids"])
    diff = float((dropped["first_logprobs"] - ref["first_logprobs"]).abs().max())
    print(f"\n{frames} frames: dropping empty patches' timestamps shortens the prompt by "
          f"{len(ref['prompt_token_ids']) - len(dropped['prompt_token_ids'])} tokens; first-token log-probs move by "
          f"up to {diff:.3f}")
    assert diff > 2e-3  # so vLLM's answers above could not have matched the adapter's prompt


def test_the_reference_can_tell_deepstack_and_positions_apart(adapter):
    """The parity test could not fail on DeepStack or positions if the model ignored them."""
    frames = FRAMES[-1]
    video = make_video(frames, seed=frames)
    prompt = video_request(video)["prompt"]
    stock = reference_qwen3_vl(adapter, video, FPS, prompt, RETENTION, 1)
    for change in ({"deepstack": False}, {"positions_rule": "contiguous"}):
        other = reference_qwen3_vl(adapter, video, FPS, prompt, RETENTION, 1, **change)
        assert (stock["first_logprobs"] - other["first_logprobs"]).abs().max() > 1e-2, change


def test_uncompressed_prompt_maps_text_to_text_and_video_to_video():
    from stc.integrations.vllm.stage1 import uncompressed_prompt

    v, s, e = 9, 7, 8  # video, vision start, vision end
    # two patches; the compressed placeholder counts its 2 tokens in the first, as vLLM's does
    compressed = [1, 2, 5, s, v, v, e, 6, s, e, 3]
    full = [5, s, v, v, v, e, 6, s, v, v, v, e]
    tokens, offsets, index = uncompressed_prompt(compressed, [(2, 8, full)], v)
    assert tokens == [1, 2, *full, 3] and offsets == [2]
    assert [tokens[i] for i in index] == compressed
    assert index.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 14]
    with pytest.raises(ValueError):
        uncompressed_prompt([1, v, 2], [(1, 2, [v])], v)


_CONFIG_CHECK = """
import json, sys
from vllm.engine.arg_utils import EngineArgs
for model, overrides in json.loads(sys.argv[1]):
    try:
        EngineArgs(model=model, hf_overrides=overrides, skip_tokenizer_init=True).create_engine_config()
        outcome = "started"
    except Exception as exc:
        outcome = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    print("STC-CHECK " + json.dumps(outcome), flush=True)
"""


def test_the_wrong_family_class_and_unserved_families_are_refused(checkpoints, tmp_path):
    """In the main process, at config time: another family's class, a bad option and Qwen3.5 (a
    config-only checkpoint) are refused with stc's message; each Qwen3-VL family's own class starts."""
    from types import SimpleNamespace

    from stc.integrations.vllm.stage1 import check_supported
    from stc.models.tiny import TINY_QWEN3_5, tiny_config

    qwen3, moe = ARCHITECTURES["qwen3_vl"], ARCHITECTURES["qwen3_vl_moe"]
    assert hf_overrides(0.1, model_type="qwen3_vl")["architectures"] == [qwen3]
    assert hf_overrides(0.1, model_type="qwen3_vl_moe")["architectures"] == [moe]
    with pytest.raises(ValueError, match="model_type"):
        hf_overrides(0.1, model_type="qwen3_5")
    with pytest.raises(NotImplementedError, match=f"select {moe} for it, not {qwen3}"):
        check_supported(SimpleNamespace(model_type="qwen3_vl_moe"), qwen3)
    with pytest.raises(NotImplementedError, match="qwen3_5"):
        check_supported(SimpleNamespace(model_type="qwen3_5"), qwen3)
    dense, sparse = str(checkpoints("qwen3_vl")), str(checkpoints("qwen3_vl_moe"))
    qwen3_5 = tmp_path / "qwen3_5"
    tiny_config(TINY_QWEN3_5).save_pretrained(qwen3_5)
    cases = [(dense, {"architectures": [ARCHITECTURES["qwen2_5_vl"]], "stc_retention": 0.1}),
             (dense, {"architectures": [qwen3], "stc_retention": 0}),
             (dense, hf_overrides(0.1, model_type="qwen3_vl")),
             (sparse, {"architectures": [qwen3], "stc_retention": 0.1}),
             (dense, {"architectures": [moe], "stc_retention": 0.1}),
             (sparse, hf_overrides(0.1, model_type="qwen3_vl_moe")),
             (str(qwen3_5), {"architectures": [qwen3], "stc_retention": 0.1})]
    proc = subprocess.run([sys.executable, "-P", "-c", _CONFIG_CHECK, json.dumps(cases)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    got = [json.loads(x.removeprefix("STC-CHECK ")) for x in proc.stdout.splitlines() if x.startswith("STC-CHECK ")]
    assert len(got) == len(cases), proc.stderr[-4000:]
    prefix = "stc.integrations.vllm.ConfigError: stc refused this engine: "
    assert got[0].startswith(prefix + f"this checkpoint is 'qwen3_vl': select {qwen3}"), got[0]
    assert got[1] == prefix + "retention must be in (0, 1], got 0.0"
    assert got[2] == "started"
    assert got[3].startswith(prefix + f"this checkpoint is 'qwen3_vl_moe': select {moe}"), got[3]
    assert got[4].startswith(prefix + f"this checkpoint is 'qwen3_vl': select {qwen3}"), got[4]
    assert got[5] == "started"
    assert got[6] == (prefix + "stc's vLLM plugin serves model_type qwen2_5_vl, qwen3_vl, qwen3_vl_moe; this checkpoint "
                      "is 'qwen3_5' (vLLM's Qwen3.5 class is not subclassed by stc yet). Drop the "
                      f"{qwen3} override for it (README, 'Serving with vLLM': what is supported)."), got[6]
