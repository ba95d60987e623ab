"""Run vLLM's offline engine on the tiny checkpoint in a fresh process; print the results as JSON.

    python tests/vllm/engine.py SPEC_JSON

SPEC: {"checkpoint": dir, "engines": [{"name": ..., "hf_overrides": {...} | null,
"video_pruning_rate": float | null}], "frames": [T, ...], "max_tokens": n, "logprobs": k}.
Each engine answers one greedy request per frame count (`stc.integrations.vllm.tiny.make_video`,
`video_request`); engines run one after the other in this process (in-process engine core).
Output: {"plugins": [loaded general plugins], engine name: [{"prompt_token_ids", "token_ids",
"num_cached_tokens", "first_logprobs": {token: logprob}}, ...]}. With "repeats": k (k >= 2), each
engine answers the same requests k times, one call after the other (later calls hit the prefix
cache), and its entry is a list of k such lists.

Chat mode (SPEC has "rounds"): real clips sent as the OpenAI server receives them (chat messages
with ``file://`` video URLs, `chat_messages`), through ``LLM.chat``: each round is one call
(its requests run concurrently), rounds run in order on the same engine, so later rounds hit
vLLM's prefix and encoder caches. Engines take "kwargs" (e.g. enable_prefix_caching,
enable_chunked_prefill, max_num_batched_tokens, block_size). With "capture": a file where each
engine's stc video calls are saved (torch.save: {engine: [{"grid", "features", "scores",
"source"}, ...]}), so that a reference can start from vLLM's own vision features.
Output: {engine name: [[result per request] per round]}.
"""

from __future__ import annotations

import gc
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

QUESTION = "What is happening in this video?"
FPS = 2.0  # 2 frames per temporal patch -> 1 s each -> temporal positions step by tokens_per_second (2)


def video_request(frames, question: str = QUESTION, fps: float = FPS) -> dict:
    """One vLLM prompt: the chat template's text around one video given as (frames, metadata)."""
    t, h, w = frames.shape[:3]
    prompt = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    metadata = {"total_num_frames": t, "fps": fps, "duration": t / fps, "frames_indices": list(range(t)),
                "height": h, "width": w, "video_backend": "opencv", "do_sample_frames": False}
    return {"prompt": prompt, "multi_modal_data": {"video": [(frames, metadata)]}}


def chat_messages(url: str, question: str = QUESTION) -> list[dict]:
    """One OpenAI-style chat request: a video URL and a question (what the server receives)."""
    return [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                         {"type": "text", "text": question}]}]


def engine_kwargs(checkpoint: str, engine: dict) -> dict:
    kwargs = dict(model=checkpoint, enforce_eager=True, max_model_len=4096, dtype="float32", seed=0,
                  limit_mm_per_prompt={"video": 1, "image": 0}, **engine.get("kwargs", {}))
    if engine.get("hf_overrides"):
        kwargs["hf_overrides"] = engine["hf_overrides"]
    if engine.get("video_pruning_rate"):
        kwargs["video_pruning_rate"] = engine["video_pruning_rate"]
    return kwargs


def main(spec: dict) -> dict:
    from vllm import LLM, SamplingParams
    from vllm.plugins import load_plugins_by_group

    from stc.integrations.vllm.tiny import make_video

    out: dict = {"plugins": sorted(load_plugins_by_group("vllm.general_plugins"))}
    requests = [video_request(make_video(t, seed=t)) for t in spec["frames"]]
    params = SamplingParams(max_tokens=spec.get("max_tokens", 8), temperature=0.0, logprobs=spec.get("logprobs", 5))
    repeats = spec.get("repeats", 1)
    for engine in spec["engines"]:
        llm = LLM(**engine_kwargs(spec["checkpoint"], engine))
        rounds = [[_result(r) for r in llm.generate(requests, params, use_tqdm=False)] for _ in range(repeats)]
        out[engine["name"]] = rounds if repeats > 1 else rounds[0]
        del llm
        gc.collect()
    return out


def _result(result) -> dict:
    completion = result.outputs[0]
    return {"prompt_token_ids": list(result.prompt_token_ids), "token_ids": list(completion.token_ids),
            "num_cached_tokens": result.num_cached_tokens,
            "first_logprobs": {str(tok): lp.logprob for tok, lp in completion.logprobs[0].items()}}


def main_chat(spec: dict) -> dict:
    import torch
    from vllm import LLM, SamplingParams

    from stc.integrations.vllm import qwen2_5_vl

    captured: list[dict] = []
    compress = qwen2_5_vl.compress_video

    def capture(embeds, scores, grid, *args):
        out, source = compress(embeds, scores, grid, *args)
        captured.append({"grid": [int(x) for x in grid], "features": embeds.detach().cpu().clone(),
                         "scores": scores.detach().cpu().clone(), "source": source.cpu().clone()})
        return out, source

    qwen2_5_vl.compress_video = capture
    params = SamplingParams(max_tokens=spec.get("max_tokens", 4), temperature=0.0, logprobs=spec.get("logprobs", 5))
    out, saved = {}, {}
    for engine in spec["engines"]:
        llm = LLM(**engine_kwargs(spec["checkpoint"], engine), allowed_local_media_path=spec["media_path"])
        out[engine["name"]] = [
            [_result(r) for r in llm.chat([chat_messages(q["url"], q["question"]) for q in round_], params,
                                          use_tqdm=False)]
            for round_ in spec["rounds"]
        ]
        saved[engine["name"]], captured[:] = list(captured), []
        del llm
        gc.collect()
    if spec.get("capture"):
        torch.save(saved, spec["capture"])
    return out


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print("STC-RESULT " + json.dumps(main_chat(spec) if "rounds" in spec else main(spec)), flush=True)
