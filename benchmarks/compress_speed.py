"""Speed and peak memory of stc stage 1 (stc.compress_tokens); not part of the tests.

Each case runs in a fresh subprocess so its peak memory (CUDA peak allocated on GPU, growth of
the process's max RSS on CPU, measured from just before the first call) is its own. Prints one table row per case.

    python benchmarks/compress_speed.py [--device cpu|cuda] [--dim 896] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [(32, 196, 0.10), (32, 196, 0.02), (32, 196, 0.01), (128, 196, 0.02)]

_CHILD = r"""
import json, resource, sys, time, torch, stc
frames, tokens, retention, dim, device, repeats = json.loads(sys.argv[1])
g = torch.Generator().manual_seed(0)
features = torch.randn(frames, tokens, dim, generator=g).to(device)
scores = torch.rand(frames, tokens, generator=g).to(device)
budget = stc.STCConfig(retention=retention).budget(frames * tokens)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
stc.compress_tokens(features, scores, budget)  # warm-up (its memory counts in the CPU peak)
sync()
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    out = stc.compress_tokens(features, scores, budget)
    sync()
    times.append(time.perf_counter() - t0)
if device == "cuda":
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
print(json.dumps({"budget": out.tokens.shape[0], "ms": 1000 * min(times), "peak_mib": peak,
                  "input_mib": features.numel() * features.element_size() / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=896, help="feature width (LLaVA-OV-0.5B: 896)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"stc.compress_tokens on {args.device}, D={args.dim}, best of {args.repeats}")
    print("| frames x tokens | retention | budget | time (ms) | peak extra memory (MiB) | input (MiB) |")
    print("|---|---|---|---|---|---|")
    for frames, tokens, retention in CASES:
        payload = json.dumps([frames, tokens, retention, args.dim, args.device, args.repeats])
        res = subprocess.run([sys.executable, "-c", _CHILD, payload], capture_output=True, text=True)
        if res.returncode != 0:
            print(f"| {frames}x{tokens} | {retention:.0%} | failed: {res.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(
            f"| {frames}x{tokens} ({frames * tokens}) | {retention:.0%} | {r['budget']} | {r['ms']:.0f} "
            f"| {r['peak_mib']:.0f} | {r['input_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
