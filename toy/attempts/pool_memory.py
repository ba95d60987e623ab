"""Resident memory a pooled 16-frame clip costs in `stc.toy.stages.encode_pool`, with glibc's
mmap threshold pinned (what encode_pool does) or left to glibc (``--default``).

    python toy/attempts/pool_memory.py [--default] [--clips 80]

Measured 2026-12-06 on the 2-core Xeon (80 clips, an untrained toy): 11.7 MB a clip by default,
5.2 MB pinned (30 clips: 13.0 and 5.5); a clip keeps its labels (4.7 MB) and features (1.5 MB)."""
import argparse
import contextlib

import numpy as np
import torch

from stc.toy import stages
from stc.toy.train import build_toy


def rss_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--default", action="store_true", help="leave glibc's threshold dynamic")
    parser.add_argument("--clips", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.default:
        stages._mmap_threshold = lambda *a, **k: contextlib.nullcontext()
    model, _ = build_toy(0)
    before = rss_mb()
    pool = stages.encode_pool(model, args.clips, 16, 2.0, np.random.default_rng(0))
    grown = rss_mb() - before
    print(f"{'default' if args.default else 'pinned'}: {grown / len(pool):.1f} MB resident a pooled clip "
          f"({len(pool)} clips, {grown:.0f} MB)")


if __name__ == "__main__":
    main()
