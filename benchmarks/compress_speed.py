"""Stage-1 compression time of stc against HoliTom, FastVID and VisionZip, as ratios measured in
one process; stc's peak memory. Not part of the tests.

Each case (frames x tokens, retention) runs in a fresh subprocess: stc's first call there gives
its peak memory (CUDA peak allocated on GPU, growth of the process's max RSS on CPU), then every
method compresses the same features round-robin (``--repeats`` rounds, best of them per method),
so the ratios compare calls that shared the machine's load. Times are printed for context only:
compare the ratios, never absolute times across runs or machines.

    python benchmarks/compress_speed.py [--device cpu|cuda] [--dim 896] [--repeats 5]
    python benchmarks/compress_speed.py --clip path/to.mp4 --retention 0.02 0.1   # a real clip
    python benchmarks/compress_speed.py --features runs/features-world-32.pt       # saved ones
    python benchmarks/compress_speed.py --device cuda --clip synthetic --size 7b   # the GPU check's
    python benchmarks/compress_speed.py --features F --threads 1 --cpu-time         # steadier on a busy CPU
    python benchmarks/compress_speed.py --features F --knn-window 2                 # + stc's bounded search
    python benchmarks/compress_speed.py --features F --floor                        # + any global pass's floor

Features: random ones by default (``--dim`` wide; the four CASES below). ``--clip`` encodes a
clip (a path, or ``synthetic``: `stc.bench.synthetic_video`) with a random-weight
LLaVA-OneVision of `python -m stc.bench` (``--size``: 0.5b, D = 896, the features that bench's
compression column sees; 7b, D = 3584, the paper's setting) and saves the features under runs/;
``--features`` reads such a file (``torch.save((features [T, N, D], scores [T, N]), path)``).
With a clip or a file the cases are its T x N tokens at each ``--retention``. On CUDA every
call is timed with CUDA events after the warm-up, elsewhere with perf_counter; on CUDA each
method's host-device synchronisations per call are counted too (torch's sync debug mode), on
a CPU the operations that would wait for a device (tests/host_reads.py). ``--reference``
also times stc's stage 1 as it was before issue 26 (tests/stage1_reference.py, the exactness
tests' reference) for a before/after ratio. stc runs at its default distances ("auto": the
arithmetic `stc.compress.resolve_distances` picks on the device, printed per row); every case
also times stc with the fp32 distances (``options={"distances": "fp32"}``, the arithmetic before
issue 26) and with the bf16 ones (their ratio: what bf16 buys on this device) and, with ``--knn-window W``,
stc with ``knn_window=W``, and prints what they change against fp32: the share of kept tokens
(sources) the fp32 result also keeps, and the share of the video's centred variance each output
explains (1 - sum ||x - out(x)||^2 / sum ||x - mean||^2, out(x) the token x went to).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [(32, 196, 0.10), (32, 196, 0.02), (32, 196, 0.01), (128, 196, 0.02)]
PEERS = ["holitom", "fastvid", "visionzip"]

_CHILD = r"""
import json, resource, sys, time, torch, stc
from stc.methods import get_method
frames, tokens, retention, dim, device, repeats, features_path, methods, reference, threads, cpu_time, window, floor, host_reads_dir = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
clock = time.process_time if cpu_time else time.perf_counter
if features_path:
    features, scores = torch.load(features_path, weights_only=True)[:2]
    features, scores = features.to(device), scores.float().to(device)
else:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(frames, tokens, dim, generator=g).to(device)
    scores = torch.rand(frames, tokens, generator=g).to(device)
frames, tokens, _ = features.shape
grid = (int(tokens ** 0.5), tokens // int(tokens ** 0.5))
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
calls = {}
PEERS_IN_CHILD = [m for m in methods if m != "stc"]
for name in methods:
    config = stc.STCConfig(method=name, retention=retention)
    method = get_method(name)
    budget = method.counts(config, frames * tokens).stage1
    calls[name] = (lambda m=method, c=config, b=budget: m.compress(features, scores, b, grid=grid, config=c))
# stc's own variants (issue 26): the fp32 distances (the arithmetic before #26), and a knn_window
variants = {"stc fp32": {"distances": "fp32"}, "stc bf16": {"distances": "bf16"}}
if window:
    variants[f"stc w={window}"] = {"knn_window": window}
for name, options in variants.items():
    config = stc.STCConfig(retention=retention, options=options)
    budget = config.budget(frames * tokens)
    calls[name] = (lambda c=config, b=budget: get_method("stc").compress(features, scores, b, grid=grid, config=c))
if reference:
    sys.path.insert(0, reference)
    import stage1_reference
    budget = stc.STCConfig(retention=retention).budget(frames * tokens)
    calls["stc (before #26)"] = lambda: stage1_reference.compress_tokens(features, scores, budget)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
out = calls["stc"]()  # stc's warm-up call: its memory is stc's peak
sync()
if device == "cuda":
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
for name, call in calls.items():  # everyone's warm-up
    call()
sync()
times = {name: [] for name in calls}
for _ in range(repeats):
    for name, call in calls.items():
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / 1000)
        else:
            t0 = clock()
            call()
            times[name].append(clock() - t0)
# The floor of any global pairwise pass over m = T*N tokens (--floor): one bf16 product at width
# 64 (14x less arithmetic than D = 896; an approximation) and the k2 nearest of every row of an
# m x m bf16 matrix found as stc finds them (stc.compress.pairwise._smallest: exact, a CPU's fastest
# way measured), chunked over rows as stc's own pass is (memory linear in m), timed like the
# methods, best of the rounds.
floors = {}
if floor:
    from stc.compress.pairwise import _NEAR, _knn_chunk_rows, _smallest
    m = frames * tokens
    rows = _knn_chunk_rows(m, torch.device(device))
    chunks = -(-m // rows)
    g = torch.Generator().manual_seed(1)
    a = torch.randn(m, 64, generator=g).to(device, torch.bfloat16)
    at = a.T.contiguous()
    chunk = torch.randn(min(rows, m), m, generator=g).to(device, torch.bfloat16)
    parts = {"product m x m x 64 (bf16)": lambda: [a[i * rows : (i + 1) * rows] @ at for i in range(chunks)],
             f"{_NEAR} nearest of each row of m x m": lambda: [_smallest(chunk, _NEAR) for _ in range(chunks)]}
    for name, call in parts.items():
        call()
        best = []
        for _ in range(repeats):
            sync(); t0 = clock(); call(); sync(); best.append(clock() - t0)
        floors[name] = 1000 * min(best)
    del chunk
# Host-device synchronisations per call: on CUDA torch's sync debug mode warns at each one;
# elsewhere tests/host_reads.py counts the operations that would wait for a device.
syncs = {}
if device != "cuda":
    sys.path.insert(0, host_reads_dir)
    from host_reads import HostReads
    for name in ["stc", *PEERS_IN_CHILD]:
        with HostReads() as reads:
            calls[name]()
        syncs[name] = reads.total
else:
    import warnings
    for name in ["stc", *PEERS_IN_CHILD]:
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calls[name]()
        torch.cuda.set_sync_debug_mode(0)
        syncs[name] = sum("synchroniz" in str(w.message) for w in caught)
# What the faster arithmetic changes: tokens kept as with fp32 distances, and the share of the
# video's (centred) variance the output still explains, 1 - sum ||x - out(x)||^2 / sum ||x - mean||^2.
x = features.reshape(-1, features.shape[-1]).double()
spread = float(((x - x.mean(0)) ** 2).sum())
def explained(o):
    return 1 - float(((x - o.tokens.double()[o.assignment]) ** 2).sum()) / spread
exact = calls["stc fp32"]()
agree = {}
for name in ["stc", "stc bf16", *[v for v in variants if v not in ("stc fp32", "stc bf16")]]:
    o = calls[name]()
    shared = len(set(o.source.tolist()) & set(exact.source.tolist())) / exact.source.numel()
    agree[name] = [shared, explained(o)]
from stc.compress import resolve_distances
print(json.dumps({"budget": out.tokens.shape[0], "auto": resolve_distances("auto", features.device), "ms": {n: 1000 * min(t) for n, t in times.items()},
                  "peak_mib": peak, "input_mib": features.numel() * features.element_size() / 2**20,
                  "agree": agree, "explained_fp32": explained(exact), "syncs": syncs, "floors": floors}))
"""


def encode_clip(clip: str, frames: int, device: str, size: str):
    """(features [T, N, D], scores [T, N]) of ``clip`` (a path or "synthetic") from the
    random-weight LLaVA-OneVision of ``size``, in the model's dtype (bf16 on CUDA, as the bench)."""
    sys.path.insert(0, str(ROOT))
    from stc.bench import random_llava_onevision, synthetic_video
    from stc.video import load_video

    llm = random_llava_onevision(size, device, "auto")
    video = synthetic_video(frames) if clip == "synthetic" else load_video(Path(clip), num_frames=frames)
    encoded, _ = llm.encode(video)
    return encoded.features.detach().cpu(), encoded.scores.float().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=896, help="width of random features (LLaVA-OV-0.5B: 896)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--features", type=Path, default=None, help="torch.save'd (features [T,N,D], scores [T,N])")
    parser.add_argument("--clip", default=None, help="encode this clip (a path, or 'synthetic') first")
    parser.add_argument("--size", default="0.5b", choices=["0.5b", "7b", "tiny"], help="encoder for --clip")
    parser.add_argument("--frames", type=int, default=32, help="frames to encode with --clip")
    parser.add_argument("--retention", type=float, nargs="+", default=None, help="only these retentions")
    parser.add_argument("--only", type=int, default=None, help="random features: only cases of this many frames")
    parser.add_argument("--reference", action="store_true", help="also time stc before issue 26")
    parser.add_argument("--knn-window", type=int, default=0,
                        help="also time stc with this knn_window (its opt-in bounded neighbour search)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--floor", action="store_true",
                        help="also time the floor of any global pairwise pass over the T*N tokens (a 64-wide "
                             "bf16 product, each row's nearest found as stc finds them), printed against "
                             "HoliTom's time after the table")
    parser.add_argument("--cpu-time", action="store_true",
                        help="CPU: the process's CPU time instead of wall time (steadier on a shared machine)")
    args = parser.parse_args()
    features = args.features
    if args.clip is not None:
        import torch

        pair = encode_clip(args.clip, args.frames, args.device, args.size)
        features = features or ROOT / "runs" / f"features-{Path(args.clip).stem}-{args.size}-{args.frames}.pt"
        features.parent.mkdir(parents=True, exist_ok=True)
        torch.save(pair, features)
        print(f"encoded {args.clip} -> {features}")
    methods = ["stc", *PEERS]
    source = f"features of {features}" if features else f"random features, D={args.dim}"
    clock = "CPU time" if args.cpu_time and args.device != "cuda" else "wall time"
    threads = f", {args.threads} thread(s)" if args.threads else ""
    print(f"stage 1 on {args.device}{threads}, {source}; {clock}, best of {args.repeats} round-robin rounds in one "
          f"process per case")
    head = ("| frames x tokens | retention | budget | stc's distances (auto ->) | stc / HoliTom | stc / FastVID | "
            "stc / VisionZip | stc fp32 / stc bf16 |")
    rule = "|---|---|---|---|---|---|---|---|"
    w = args.knn_window
    if w:
        head += f" stc w={w} / HoliTom |"
        rule += "---|"
    if args.reference:
        head += " stc now / before #26 |"
        rule += "---|"
    agree_head = "stc, stc bf16" + (f", stc w={w}" if w else "")
    cuda = args.device == "cuda"
    print(head + f" times (ms): stc, HoliTom, FastVID, VisionZip | kept as with fp32 ({agree_head}) | "
          f"explained variance (fp32, {agree_head}) | stc peak extra memory (MiB) |"
          + (" host syncs per call: stc, HoliTom, FastVID, VisionZip |" if cuda else
             " host reads per call (tests/host_reads.py): stc, HoliTom, FastVID, VisionZip |"))
    print(rule + "---|---|---|---|---|")
    cases = CASES
    floors = []
    if features:
        import torch

        t, n = torch.load(features, weights_only=True)[1].shape
        cases = [(t, n, r) for r in (args.retention or [0.10, 0.02, 0.01])]
    for frames, tokens, retention in cases:
        if (args.only and frames != args.only) or (args.retention and retention not in args.retention):
            continue
        payload = json.dumps([frames, tokens, retention, args.dim, args.device, args.repeats,
                              str(features) if features else None, methods,
                              str(ROOT / "tests") if args.reference else None, args.threads,
                              args.cpu_time and args.device != "cuda", w, args.floor, str(ROOT / "tests")])
        res = subprocess.run([sys.executable, "-c", _CHILD, payload], capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            print(f"| {frames}x{tokens} | {retention:.0%} | failed: {res.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        if "skip" in r:
            print(f"| {frames}x{tokens} | {retention:.0%} | skipped: {r['skip']} |")
            continue
        ms = r["ms"]
        ratios = " | ".join(f"{ms['stc'] / ms[p]:.2f}" for p in PEERS) + f" | {ms['stc fp32'] / ms['stc bf16']:.2f}"
        if w:
            ratios += f" | {ms[f'stc w={w}'] / ms['holitom']:.2f}"
        extra = f" {ms['stc'] / ms['stc (before #26)']:.2f} |" if args.reference else ""
        times = ", ".join(f"{ms[n]:.0f}" for n in methods)
        kept = ", ".join(f"{a[0]:.3f}" for a in r["agree"].values())
        explained = ", ".join(f"{v:.3f}" for v in [r["explained_fp32"], *(a[1] for a in r["agree"].values())])
        print(f"| {frames}x{tokens} ({frames * tokens}) | {retention:.0%} | {r['budget']} | {r['auto']} | {ratios} |{extra} "
              f"{times} | {kept} | {explained} | {r['peak_mib']:.0f} |"
              + " " + ", ".join(str(r["syncs"].get(n, "-")) for n in methods) + " |", flush=True)
        if r["floors"]:
            floors.append((f"{frames}x{tokens} tokens ({retention:.0%} case)", r["floors"], ms["holitom"]))
    for case, parts, holitom in floors:
        print(f"floor of any global pairwise pass over {case}, same process: "
              + ", ".join(f"{name} {v:.0f} ms" for name, v in parts.items())
              + f", together {sum(parts.values()) / holitom:.2f}x HoliTom's whole stage 1 ({holitom:.0f} ms)")


if __name__ == "__main__":
    main()
