"""Does a row's speed in `stc.bench` depend on when it runs? Not part of the tests.

One model, one clip, the baseline and stc / stc-st / HoliTom / stc-stage1 at 10% and 2%, each
answered in several interleaved rounds after a 2-token warm-up; prints prefill, compression and
decode speed of every answer. On one H200 (docs/gpu/decode-rounds-h200.txt) a row's first full
answer decoded up to 5x slower than its later ones, which is why `stc.bench --paper` reports the
median of 3 rounds.

    python benchmarks/decode_rounds.py --size 7b --device cuda --frames 32 --new-tokens 64
    python benchmarks/decode_rounds.py --size tiny --device cpu --frames 8 --new-tokens 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stc  # noqa: E402
from stc.bench import default_clip, random_llava_onevision  # noqa: E402
from stc.video import load_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "0.5b", "7b"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--video", type=Path, default=None, help="default: gradio's world.mp4")
    args = parser.parse_args()
    llm = random_llava_onevision(args.size, args.device, "auto")  # bf16 on CUDA, fp32 on CPU
    video = load_video(args.video or default_clip(), num_frames=args.frames)
    question = "Describe what happens in this video."
    configs = [None] + [stc.STCConfig(method=m, retention=r) for r in (0.1, 0.02)
                        for m in ("stc", "stc-st", "holitom", "stc-stage1")]
    for config in configs:
        llm.answer(video, question, config=config, max_new_tokens=2)
    for round_ in range(args.rounds):
        for config in configs:
            t0 = time.perf_counter()
            s = llm.answer(video, question, config=config, max_new_tokens=args.new_tokens).stats
            wall = time.perf_counter() - t0
            name = "baseline" if config is None else f"{config.method} {config.retention:.0%}"
            print(f"round {round_} {name:16s} prefill {s.prefill_seconds * 1e3:7.1f} ms  compress "
                  f"{s.compress_seconds * 1e3:6.1f} ms  decode {s.decode_tokens_per_second:6.1f} tok/s  "
                  f"new {s.new_tokens}  wall {wall:.2f} s", flush=True)


if __name__ == "__main__":
    main()
