"""Run vLLM's offline engine on the tiny checkpoint in a fresh process; print the results as JSON.

    python tests/vllm/engine.py SPEC_JSON

SPEC: {"checkpoint": dir, "engines": [{"name": ..., "hf_overrides": {...} | null,
"video_pruning_rate": float | null}], "frames": [T, ...], "max_tokens": n, "logprobs": k}.
Each engine answers one greedy request per frame count (`stc.integrations.vllm.tiny.make_video`,
`video_request`); engines run one after the other in this process (in-process engine core).
Output: {"plugins": [loaded general plugins], engine name: [{"prompt_token_ids", "token_ids",
"first_logprobs": {token: logprob}}, ...]}.
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


def engine_kwargs(checkpoint: str, engine: dict) -> dict:
    kwargs = dict(model=checkpoint, enforce_eager=True, max_model_len=4096, dtype="float32", seed=0,
                  limit_mm_per_prompt={"video": 1, "image": 0})
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
    for engine in spec["engines"]:
        llm = LLM(**engine_kwargs(spec["checkpoint"], engine))
        results = []
        for result in llm.generate(requests, params, use_tqdm=False):
            completion = result.outputs[0]
            results.append({
                "prompt_token_ids": list(result.prompt_token_ids),
                "token_ids": list(completion.token_ids),
                "first_logprobs": {str(tok): lp.logprob for tok, lp in completion.logprobs[0].items()},
            })
        out[engine["name"]] = results
        del llm
        gc.collect()
    return out


if __name__ == "__main__":
    print("STC-RESULT " + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
