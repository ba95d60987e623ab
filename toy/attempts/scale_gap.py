"""Issue 20: does the toy read count and motion worse at the evaluation's object scale than at
its training scale? (The diagnostic behind the "native" pool of `stc.toy.stages.POOLS`.)

    python toy/attempts/scale_gap.py CHECKPOINT [N] [threads]

Draws the first clips of the "long" training pool exactly as stage B draws them (`pool_rng`:
seed 0, each clip's training seed and object scale, 1-2x), keeps the first N of type count and
the first N of type motion, and answers each twice, uncompressed at 14 x 14 tokens a frame: at
its training scale and re-rendered at 1x (the scale `make_sample` gives held-out clips; same
seed, so the same events). The answer is the option whose text has the lowest loss after
`stc.eval`'s prompt (the loss stage B trains), so no generation or parsing enters it. Prints
the accuracy of each with its 95% Wilson interval. No compressor is involved; training pool
clips only (nothing held out is looked at).
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

import stc
from stc.eval.summary import wilson
from stc.toy.data import LETTERS, TRAIN_SEEDS, make_sample
from stc.toy.model import Prompts, pixel_values, vision_features
from stc.toy.stages import POOLS, _batch, pool_rng


def option_losses(model, prompts, sample, feats) -> list[float]:
    frames = list(range(len(sample.frames)))
    rows = [(sample, feats, frames, letter, 14, "answer") for letter in LETTERS[: len(sample.options)]]
    return [r["loss"] for r in _batch(model, prompts, rows)[1]]


def main() -> None:
    checkpoint = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    llm = stc.load(str(checkpoint))
    model, processor = llm.model.float().eval(), llm.processor
    prompts = Prompts(model, processor)
    count, frames, top = POOLS["long"]
    rng = pool_rng(0, "long", POOLS)
    right = {(kind, at): [] for kind in ("count", "motion") for at in ("training scale", "1x")}
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(count):
            seed, scale = int(rng.integers(TRAIN_SEEDS.stop)), float(rng.uniform(1.0, top))
            plain = make_sample(seed, frames, 1.0)
            if plain.kind not in ("count", "motion") or len(right[(plain.kind, "1x")]) >= n:
                continue
            for at, sample in (("training scale", make_sample(seed, frames, scale)), ("1x", plain)):
                kind = sample.kind
                feats = vision_features(model, pixel_values(sample.frames))
                losses = option_losses(model, prompts, sample, feats)
                right[(kind, at)].append(LETTERS[int(np.argmin(losses))] == sample.answer)
            if all(len(v) >= n for v in right.values()):
                break
    print(f"{checkpoint}: {n} clips a type from the 'long' pool, lowest option loss, 14 x 14, "
          f"{time.perf_counter() - t0:.0f}s")
    for (kind, at), v in right.items():
        lo, hi = wilson(sum(v), len(v))
        print(f"{kind:7s} at {at:15s}: {100 * np.mean(v):5.1f}% ({lo:.0f}-{hi:.0f}) of {len(v)}")


if __name__ == "__main__":
    main()
