"""The vLLM tests run in the vLLM environment (`make test-vllm`, tests/vllm/env.py), never in the
project's .venv: there vllm is absent and these files are not collected."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.find_spec("vllm")
# origin None: a namespace match on this very folder (pytest puts tests/ on sys.path), not vLLM
IN_VLLM_ENV = _SPEC is not None and _SPEC.origin is not None
if not IN_VLLM_ENV:
    collect_ignore_glob = ["test_*.py"]


def wait_until_healthy(proc: subprocess.Popen, port: int, log: Path, seconds: float = 300) -> None:
    """Wait for the OpenAI server ``proc`` on ``port`` to answer /health; fail with the end of its
    ``log`` if it exits or is not up within ``seconds``."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise AssertionError("the server exited:\n" + log.read_text()[-6000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no server in {seconds:.0f} s:\n" + log.read_text()[-6000:])
        time.sleep(1)


def need(condition: bool, reason: str) -> None:
    """Skip locally when ``condition`` fails; under CI=true fail instead (nothing may skip there)."""
    if not condition:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


# Real clips under vLLM's default settings, shared by test_vllm_cache.py and test_readme.py
# (session fixtures: one engine run and one set of references for both).
RETENTION = 0.1  # cockatoo: 14 x 60 merged tokens -> 84 kept; the README's serve command uses 0.1 too
QUESTIONS = ["What is happening in this video?", "Describe the video."]
MAX_TOKENS = 4
PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
          "<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n")
ENGINES = [
    # vLLM's defaults: prefix caching and chunked prefill on, 128-token blocks on CPU
    {"name": "defaults", "kwargs": {}},
    # small blocks and chunks: cache hits and prefill chunks end inside videos
    {"name": "chunked-32", "kwargs": {"block_size": 32, "enable_chunked_prefill": True, "max_num_batched_tokens": 64}},
    {"name": "unchunked-32", "kwargs": {"block_size": 32, "enable_chunked_prefill": False, "max_num_batched_tokens": 4096}},
]
HERE = Path(__file__).resolve().parent


def load_frames(path: Path):
    """The frames and metadata vLLM's server decodes for a ``file://`` URL (its Qwen2-VL loader)."""
    from vllm.multimodal.media import MediaConnector

    media = MediaConnector(allowed_local_media_path="/").fetch_video(path.as_uri(), video_processor="Qwen2VLVideoProcessor")
    return media.media if hasattr(media, "media") else media


@pytest.fixture(scope="session")
def real_clips() -> dict:
    from clips import clips

    found = clips()
    need(all(found.values()), f"real clips missing: {[k for k, v in found.items() if not v]} (tests/vllm/clips.py)")
    return found


@pytest.fixture(scope="session")
def run(tmp_path_factory, real_clips):
    """One child process, three engines (ENGINES), the same rounds of chat requests on each."""
    from stc.integrations.vllm import hf_overrides
    from stc.integrations.vllm.tiny import write_checkpoint

    folder = tmp_path_factory.mktemp("cache")
    checkpoint = write_checkpoint(folder / "tiny-qwen2.5-vl")
    requests = [{"clip": name, "url": path.as_uri(), "question": q} for name, path in real_clips.items() for q in QUESTIONS]
    rounds = [requests, *[[r] for r in requests], requests]
    spec = {"checkpoint": str(checkpoint), "media_path": "/", "rounds": rounds, "max_tokens": MAX_TOKENS, "logprobs": 5,
            "engines": [{**e, "hf_overrides": hf_overrides(RETENTION)} for e in ENGINES],
            "capture": str(folder / "vision.pt")}
    proc = subprocess.run([sys.executable, "-P", str(HERE / "engine.py"), json.dumps(spec)], capture_output=True,
                          text=True, timeout=1200, cwd=folder, env={**os.environ})
    line = next((x for x in proc.stdout.splitlines() if x.startswith("STC-RESULT ")), None)
    assert proc.returncode == 0 and line, f"engine run failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    import torch

    return {"checkpoint": checkpoint, "rounds": rounds, "results": json.loads(line.removeprefix("STC-RESULT ")),
            "vision": torch.load(folder / "vision.pt")}


@pytest.fixture(scope="session")
def references(run, real_clips):
    """Per clip: vLLM's captured vision call, transformers' own features, and the reference per
    question computed from vLLM's features (reference.py: float-level ties)."""
    from reference import load, reference

    adapter = load(str(run["checkpoint"]))
    out = {}
    for name, path in real_clips.items():
        frames, meta = load_frames(path)
        fps = len(frames) / meta["duration"]  # the sampled rate, as vLLM's processor derives it
        own = reference(adapter, frames, fps, PROMPT.format(question=QUESTIONS[0]), RETENTION, 1)
        t, n = own["scores"].shape
        calls = [c for c in run["vision"]["defaults"] if c["features"].shape[0] == t * n and c["grid"][0] == t]
        assert calls, f"no vLLM vision call for {name} (grid T={t})"
        vision = (calls[0]["features"], calls[0]["scores"])
        out[name] = {"vllm": calls[0], "own": own, "source_size": frames.shape[1:3], "questions": {
            q: reference(adapter, frames, fps, PROMPT.format(question=q), RETENTION, MAX_TOKENS, vision=vision)
            for q in QUESTIONS}}
    return out
