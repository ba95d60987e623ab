"""stc inside vLLM's CPU build, on a tiny random-weight Qwen2.5-VL written to disk here.

Engines run in child processes (tests/vllm/engine.py, in-process engine core): one with the
plugin loaded (stc at 25%, then plain vLLM), one with no plugin loaded at all (VLLM_PLUGINS="").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stc.arith import budget_for
from stc.integrations.vllm import ARCHITECTURE, hf_overrides
from stc.integrations.vllm.tiny import make_video, write_checkpoint

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from engine import FPS, video_request  # noqa: E402
from reference import load, reference  # noqa: E402

RETENTION = 0.25
FRAMES = [4, 8, 12]  # 2, 4, 6 temporal patches of 8 x 8 merged tokens; 12 frames put temporal
# positions (0..10) past the spatial grid (0..7), where vLLM's EVS offset and stc's differ
MAX_TOKENS = 8
TOKENS_PER_PATCH = 64


def _run_engines(checkpoint: Path, engines: list[dict], env: dict | None = None) -> dict:
    spec = {"checkpoint": str(checkpoint), "frames": FRAMES, "engines": engines, "max_tokens": MAX_TOKENS,
            "logprobs": 5}
    run = subprocess.run([sys.executable, "-P", str(HERE / "engine.py"), json.dumps(spec)], capture_output=True,
                         text=True, timeout=900, cwd=checkpoint.parent, env={**os.environ, **(env or {})})
    line = next((x for x in run.stdout.splitlines() if x.startswith("STC-RESULT ")), None)
    assert run.returncode == 0 and line, f"engine run failed ({run.returncode}):\n{run.stderr[-6000:]}"
    return json.loads(line.removeprefix("STC-RESULT "))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("vllm") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="module")
def with_plugin(checkpoint) -> dict:
    return _run_engines(checkpoint, [{"name": "stc", "hf_overrides": hf_overrides(RETENTION)}, {"name": "plain"}])


@pytest.fixture(scope="module")
def without_plugin(checkpoint) -> dict:
    return _run_engines(checkpoint, [{"name": "plain"}], env={"VLLM_PLUGINS": ""})


def _video_tokens(ids: list[int], video_id: int) -> int:
    return sum(1 for i in ids if i == video_id)


def test_prompt_tokens_are_the_budget_plus_the_text(with_plugin, checkpoint):
    video_id = json.loads((checkpoint / "config.json").read_text())["video_token_id"]
    for frames, stc_run, plain_run in zip(FRAMES, with_plugin["stc"], with_plugin["plain"]):
        total = frames // 2 * TOKENS_PER_PATCH
        assert _video_tokens(plain_run["prompt_token_ids"], video_id) == total
        budget = budget_for(RETENTION, total)
        assert _video_tokens(stc_run["prompt_token_ids"], video_id) == budget
        assert len(stc_run["prompt_token_ids"]) == len(plain_run["prompt_token_ids"]) - total + budget
        # the text around the video is untouched
        strip = [i for i in stc_run["prompt_token_ids"] if i != video_id]
        assert strip == [i for i in plain_run["prompt_token_ids"] if i != video_id]


def test_first_token_and_greedy_tokens_match_transformers(with_plugin, checkpoint):
    adapter = load(str(checkpoint))
    eos = set(json.loads((checkpoint / "generation_config.json").read_text())["eos_token_id"])
    for frames, got in zip(FRAMES, with_plugin["stc"]):
        request = video_request(make_video(frames, seed=frames))
        want = reference(adapter, make_video(frames, seed=frames), FPS, request["prompt"], RETENTION, MAX_TOKENS)
        assert got["prompt_token_ids"] == want["prompt_token_ids"], frames
        for token, logprob in got["first_logprobs"].items():
            assert abs(logprob - float(want["first_logprobs"][int(token)])) < 2e-3, (frames, token)
        n = len(got["token_ids"])
        assert got["token_ids"] == want["token_ids"][:n], frames
        assert n == MAX_TOKENS or want["token_ids"][n - 1] in eos, frames


def test_the_reference_can_tell_positions_apart(checkpoint):
    """The parity test above could not fail on positions if the model ignored them: starting the
    text after the video at EVS's offset (the grid width, 8) instead of the grid's largest
    position + 1 (11 on 12 frames) changes the first-token log-probabilities."""
    adapter = load(str(checkpoint))
    frames = make_video(FRAMES[-1], seed=FRAMES[-1])
    prompt = video_request(frames)["prompt"]
    stock = reference(adapter, frames, FPS, prompt, RETENTION, 1)
    evs_offset = reference(adapter, frames, FPS, prompt, RETENTION, 1, text_offset=8)
    assert (stock["first_logprobs"] - evs_offset["first_logprobs"]).abs().max() > 1e-2


def test_plugin_installed_but_not_selected_changes_nothing(with_plugin, without_plugin):
    assert "stc" in with_plugin["plugins"] and "stc" not in without_plugin["plugins"]
    assert with_plugin["plain"] == without_plugin["plain"]


def test_unsupported_model_and_bad_options_fail_clearly():
    from types import SimpleNamespace

    from stc.integrations.vllm.qwen2_5_vl import check_supported

    with pytest.raises(NotImplementedError, match="llava_onevision"):
        check_supported(SimpleNamespace(model_type="llava_onevision"))
    with pytest.raises(ValueError, match="retention"):
        hf_overrides(1.5)
    assert hf_overrides(0.1, tau=0.8)["architectures"] == [ARCHITECTURE]


_CONFIG_CHECK = """
import json, sys, time
from vllm.engine.arg_utils import EngineArgs
for model, overrides in json.loads(sys.argv[1]):
    start = time.monotonic()
    try:
        EngineArgs(model=model, hf_overrides=overrides, skip_tokenizer_init=True).create_engine_config()
        outcome = "started"
    except Exception as exc:
        outcome = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    print("STC-CHECK " + json.dumps([outcome, time.monotonic() - start]), flush=True)
"""


def test_bad_options_and_other_checkpoints_are_refused_in_the_main_process(checkpoint, tmp_path):
    """What `vllm serve` / `LLM(...)` run first, in the main process, before any worker: bad
    stc_* values and a non-Qwen2.5-VL checkpoint stop there with stc's one-line message."""
    from transformers import Qwen2Config

    other = tmp_path / "qwen2-text"
    Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=1000).save_pretrained(other)
    select = {"architectures": [ARCHITECTURE]}
    cases = [(str(checkpoint), {**select, "stc_retention": 0}), (str(checkpoint), {**select, "stc_retention": 2}),
             (str(checkpoint), {**select, "stc_retention": 0.1, "stc_knn_k": 0}),
             (str(other), {**select, "stc_retention": 0.1}), (str(checkpoint), {**select, "stc_retention": 0.1})]
    run = subprocess.run([sys.executable, "-P", "-c", _CONFIG_CHECK, json.dumps(cases)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    got = [json.loads(x.removeprefix("STC-CHECK ")) for x in run.stdout.splitlines() if x.startswith("STC-CHECK ")]
    assert len(got) == len(cases), run.stderr[-4000:]
    prefix = "stc.integrations.vllm.ConfigError: stc refused this engine: "
    assert got[0][0] == prefix + "retention must be in (0, 1], got 0.0"
    assert got[1][0] == prefix + "retention must be in (0, 1], got 2.0"
    assert got[2][0].startswith(prefix) and "knn_k" in got[2][0]
    assert got[3][0].startswith(prefix + "stc's vLLM plugin serves model_type qwen2_5_vl, qwen3_vl, qwen3_vl_moe; this checkpoint is 'qwen2'")
    assert got[4][0] == "started"
    assert all("\n" not in outcome for outcome, _ in got)
    assert max(seconds for _, seconds in got) < 30
