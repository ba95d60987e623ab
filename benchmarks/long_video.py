"""Long videos at a fixed token budget (issue 15); not part of the tests.

Scaling (default): the tiny LLaVA-OneVision (`stc/models/tiny.py`) answers's first half,
`VideoLLM.prepare` (encode + stc stage 1 + prompt), at a budget of --budget tokens
(`STCConfig(max_tokens=...)`) over 64 ... 1024 frames of a generated clip (`stc.bench.
synthetic_video`, 216x384). Above `stc.stream.WINDOW_FRAMES` frames the video is encoded
CHUNK_FRAMES at a time into `StreamCompressor`. Each frame count runs in a fresh subprocess:
stage-1 time, encode time, end-to-end encode+compress time, and the growth of peak RSS during
prepare over the process after loading the model and the decoded frames. Prints the growth
from 128 to 1024 frames.

Agreement (--agreement): the streaming result against the exact `compress_tokens` on the same
features (the tiny model's, of 128 and 256 frames of gradio's world.mp4 at 384 px): coverage of
the input tokens (mean cosine similarity of each input token to the output token that
represents it), share of the frames the exact result keeps tokens from that the stream keeps
too, and share of the exact retention pool the stream also selects.

    python benchmarks/long_video.py [--frames 64 128 256 512 1024] [--budget 2048] [--threads 1]
    python benchmarks/long_video.py --agreement [--features tiny|pixels] [--frames 128 256] [--budget 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_SCALE = r"""
import json, resource, sys, time, torch
frames, budget, threads = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
import stc
from stc.bench import synthetic_video

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

llm = stc.load("tiny-random/llava-onevision")
video = synthetic_video(frames, 216, 384)
config = stc.STCConfig(max_tokens=budget, method="stc-stage1")
llm.prepare(video.__class__.from_frames(video.frames[:2]), "warm up", stc.STCConfig(0.5, method="stc-stage1"))
llm.clear_cache()
before = rss()
t0 = time.perf_counter()
prep = llm.prepare(video, "What happens in the video?", config)
total = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"frames": frames, "streamed": llm.streams(video, config), "tokens": prep.encoded.num_tokens,
                  "kept": prep.kept.tokens.shape[0], "stage1": prep.compress_seconds,
                  "encode": prep.encoded.vision_seconds, "total": total, "peak_growth": peak - before,
                  "frames_bytes": video.frames.nbytes}))
"""

_AGREE = r"""
import json, sys, time, torch
frames, budget, threads, kind = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
import gradio, os, stc
from stc.models.streaming import CHUNK_FRAMES
from stc.stream import StreamCompressor
clip = os.path.join(os.path.dirname(gradio.__file__), "media_assets", "videos", "world.mp4")
llm = stc.load("tiny-random/llava-onevision")
video = stc.load_video(clip, num_frames=frames, max_side=384)
if kind == "tiny":
    parts = [llm.adapter.encode(video.take(slice(a, a + CHUNK_FRAMES))) for a in range(0, frames, CHUNK_FRAMES)]
    features = torch.cat([p.features for p in parts]).float()
    scores = torch.cat([p.scores for p in parts])
else:  # pooled pixels: 14x14 patches of 4x4 RGB, texture + colour against the frame (51 values)
    x = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(56, 56), mode="area")
    p = x.reshape(frames, 3, 14, 4, 14, 4).permute(0, 2, 4, 1, 3, 5).reshape(frames, 196, 3, 16)
    colour = p.mean(-1)
    features = torch.cat([(p - colour[..., None]).reshape(frames, 196, 48),
                          2 * (colour - colour.mean(dim=1, keepdim=True))], -1)
    scores = features.norm(dim=2)
n = features.shape[1]
flat = torch.nn.functional.normalize(features.reshape(-1, features.shape[-1]), dim=-1)

def measure(out):
    a = out.assignment
    rep = torch.nn.functional.normalize(out.tokens.float(), dim=-1)
    cover = (flat * rep[a.clamp_min(0)]).sum(-1) * (a >= 0)
    return {"coverage": float(cover.mean()), "frames": set((out.source // n).tolist()),
            "pool": set(out.source[out.selected].tolist())}

t0 = time.perf_counter()
exact = stc.compress_tokens(features, scores, budget)
t_exact = time.perf_counter() - t0
t0 = time.perf_counter()
stream = StreamCompressor(budget)
for a in range(0, frames, CHUNK_FRAMES):
    stream.add(features[a:a + CHUNK_FRAMES], scores[a:a + CHUNK_FRAMES])
streamed = stream.finish()
t_stream = time.perf_counter() - t0
e, s = measure(exact), measure(streamed)
print(json.dumps({"frames": frames, "exact_s": t_exact, "stream_s": t_stream,
                  "coverage_exact": e["coverage"], "coverage_stream": s["coverage"],
                  "frames_exact": len(e["frames"]), "frames_stream": len(s["frames"]),
                  "frames_shared": len(e["frames"] & s["frames"]) / max(1, len(e["frames"])),
                  "pool_shared": len(e["pool"] & s["pool"]) / max(1, len(e["pool"]))}))
"""


def _child(script: str, args: list) -> dict:
    run = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=None)
    parser.add_argument("--budget", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--agreement", action="store_true")
    parser.add_argument("--features", choices=["tiny", "pixels"], default="tiny",
                        help="--agreement: the tiny model's features, or pooled pixels")
    args = parser.parse_args()
    if args.agreement:
        print(f"Agreement of the stream with exact compress_tokens, budget {args.budget} tokens, "
              f"{args.features} features of world.mp4\n")
        print("| frames | exact s | stream s | coverage exact | coverage stream | frames kept exact / stream "
              "| exact's frames kept by stream | exact's pool selected by stream |")
        print("|---|---|---|---|---|---|---|---|")
        for frames in args.frames or [128, 256]:
            r = _child(_AGREE, [frames, args.budget, args.threads, args.features])
            print(f"| {frames} | {r['exact_s']:.1f} | {r['stream_s']:.1f} | {r['coverage_exact']:.4f} | "
                  f"{r['coverage_stream']:.4f} | {r['frames_exact']} / {r['frames_stream']} | "
                  f"{r['frames_shared']:.1%} | {r['pool_shared']:.1%} |", flush=True)
        return
    print(f"Budget {args.budget} tokens (STCConfig(max_tokens={args.budget}, method='stc-stage1')), tiny "
          "LLaVA-OneVision, generated 216x384 clip; peak = growth of peak RSS during prepare\n")
    print("| frames | tokens | path | encode s | stage 1 s | encode + compress s | peak RSS growth MB "
          "| decoded frames MB |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    for frames in args.frames or [64, 128, 256, 512, 1024]:
        r = rows[frames] = _child(_SCALE, [frames, args.budget, args.threads])
        assert r["kept"] == min(args.budget, r["tokens"])
        print(f"| {frames} | {r['tokens']} | {'stream' if r['streamed'] else 'exact'} | {r['encode']:.1f} | "
              f"{r['stage1']:.1f} | {r['total']:.1f} | {r['peak_growth'] / 2**20:.0f} | "
              f"{r['frames_bytes'] / 2**20:.0f} |", flush=True)
    if 128 in rows and 1024 in rows:
        a, b = rows[128], rows[1024]
        print(f"\n128 -> 1024 frames (8x): stage 1 {b['stage1'] / a['stage1']:.2f}x, encode + compress "
              f"{b['total'] / a['total']:.2f}x, peak RSS growth {b['peak_growth'] / 2**20:.0f} MB vs "
              f"{a['peak_growth'] / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
