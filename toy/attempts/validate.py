"""Uncompressed accuracy of a toy checkpoint on the validation seeds (`stc.toy.data.VALIDATION_SEEDS`,
250 questions, 50 per type; used by no training run, no test and no table).

    python toy/attempts/validate.py CHECKPOINT OUT.json [threads]

The rule that chose the committed weights, set before either was compared: new weights replace
the committed ones only if their overall accuracy here is higher. No compressed answer enters
it. 2026-12-05: the longer run 76.8% (colour 100, flash 98, motion 50, count 46, order 90)
against the previous weights' 72.4% (100, 98, 54, 36, 74); both 0 unparsed, ~3 min each.
2026-12-06: the run with a third pool at the held-out scale 83.2% (100, 100, 68, 56, 92)
against 76.8%: adopted. 2026-12-07: a place term in stage A (`--vision-place 1.0`)
85.6% (100, 98, 82, 54, 94) against 83.2%: adopted (retrained the next session: the same 85.6%
on every type; committed with every table rerun on it)."""
import json
import sys
import time

import torch

from stc.toy.data import VALIDATION_SEEDS
from stc.toy.train import evaluate


def main() -> None:
    checkpoint, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    t0 = time.perf_counter()
    accuracy = evaluate(checkpoint, VALIDATION_SEEDS)
    accuracy.pop("answers")
    accuracy.update(seconds=round(time.perf_counter() - t0, 1), checkpoint=checkpoint)
    print(json.dumps(accuracy))
    with open(out, "w") as f:
        f.write(json.dumps(accuracy, indent=2) + "\n")


if __name__ == "__main__":
    main()
