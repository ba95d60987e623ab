"""Does the toy count flashes, or red-square area? Uncompressed count answers against how much red
square each clip shows, on count clips from a diagnostic seed range (4,000,000 + i: neither a
training, held-out, validation nor demo seed; no compressor).

    python toy/attempts/count_mass.py CHECKPOINT [N [FRAMES]]   # N count questions (default 200),
                                                                 # clips of FRAMES frames (default 16)

For each clip: the true count c, the answer a, and the red square's total visible area over its
flash frames in pooled tokens (pixels / (384/14)^2: LLaVA-OneVision's 14 x 14 grid a frame).
If the LLM counts by mass (an attention average over red-square tokens), then at a fixed c a
larger area should read as more flashes: it prints, per true count, the mean area of the answers
below, equal to and above the truth, and the rank correlation of (a - c) with area / c over
the clips whose answer parsed. ~1 s a question on 2 cores.
"""
import sys

import numpy as np
import torch

from stc.toy.data import FRAMES, COLOURS, LETTERS, SHAPES, TYPES, make_sample
from stc.toy.train import evaluate

RED = 2 + list(COLOURS).index("red")
SQUARE = 1 + SHAPES.index("square")
TOKEN_PIXELS = (384 / 14) ** 2
START = 4_000_000


def count_seeds(n: int) -> list[int]:
    """The first ``n`` count clips of the diagnostic range (count_probe.py uses the same)."""
    return [START + TYPES.index("count") + len(TYPES) * i for i in range(n)]


def red_area(sample) -> float:
    """The red square's visible area over the clip, in pooled (14 x 14 a frame) tokens."""
    return float(((sample.labels[..., 0] == SQUARE) & (sample.labels[..., 1] == RED)).sum()) / TOKEN_PIXELS


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def main() -> None:
    checkpoint = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else FRAMES
    torch.set_num_threads(2)
    seeds = count_seeds(n)
    answers = evaluate(checkpoint, seeds, frames=frames)["answers"]
    rows = []
    for s in seeds:
        sample = make_sample(s, frames)
        truth = LETTERS.index(sample.answer) + 1
        got = answers[f"toy-{s}"]
        area = red_area(sample)
        # the still square of another colour that half the clips hold (in every frame)
        coloured = (sample.labels[..., 0] == SQUARE) & (sample.labels[..., 1] > RED)  # clutter is grey
        other = bool(coloured.any(axis=(1, 2)).mean() > 0.5)
        rows.append((truth, None if got is None else LETTERS.index(got) + 1, area, other))
    print(f"{checkpoint}: {n} count questions of {frames} frames (seeds {seeds[0]}..{seeds[-1]}, step {len(TYPES)})")
    print("true  n  right  under  over  unparsed | mean red area (tokens): under  right  over")
    for c in range(1, 5):
        mine = [r for r in rows if r[0] == c]
        parts = {k: [r[2] for r in mine if r[1] is not None and np.sign(r[1] - c) == k] for k in (-1, 0, 1)}
        unparsed = sum(r[1] is None for r in mine)
        means = "  ".join(f"{np.mean(v):5.1f}" if v else "    -" for v in (parts[-1], parts[0], parts[1]))
        print(f"{c:>4} {len(mine):>3} {len(parts[0]):>6} {len(parts[-1]):>6} {len(parts[1]):>5} {unparsed:>9} | {means}")
    parsed = [r for r in rows if r[1] is not None]
    err = np.array([r[1] - r[0] for r in parsed], float)
    per = np.array([r[2] / r[0] for r in parsed], float)
    print(f"accuracy {np.mean(err == 0):.3f}; Spearman(answer - truth, area / truth) = {_spearman(err, per):+.3f}"
          f" over {len(parsed)} parsed answers")
    for flag, name in ((True, "with"), (False, "without")):
        sub = [r for r in parsed if r[3] == flag]
        e = np.array([r[1] - r[0] for r in sub], float)
        print(f"clips {name} a still square of another colour: {len(sub)}, right {np.mean(e == 0):.3f}, "
              f"over {np.mean(e > 0):.3f}, under {np.mean(e < 0):.3f}")
    # the same within each true count, where the sign of the error has room both ways (2, 3)
    for c in (2, 3):
        sub = [(r[1] - r[0], r[2]) for r in parsed if r[0] == c]
        if len(sub) > 5:
            e, a = np.array(sub, float).T
            print(f"  true {c}: Spearman(answer - truth, area) = {_spearman(e, a):+.3f} over {len(sub)}")


if __name__ == "__main__":
    main()
