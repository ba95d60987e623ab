"""Which motions and which counts a toy checkpoint gets wrong: confusion tables on the validation
seeds (`stc.toy.data.VALIDATION_SEEDS`: 50 motion and 50 count questions; no held-out question,
no compressor), uncompressed, asked as `stc.eval` asks (`stc.toy.train.evaluate`).

    python toy/attempts/confusion.py CHECKPOINT        # e.g. toy/llava-onevision

Rows: the true answer; columns: the answer given (or unparsed). ~1.5 min on 2 cores.
"""
import collections
import sys

import torch

from stc.toy.data import LETTERS, OPTIONS, TYPES, VALIDATION_SEEDS, make_sample
from stc.toy.train import evaluate

KINDS = ("motion", "count")


def main() -> None:
    checkpoint = sys.argv[1]
    torch.set_num_threads(2)
    seeds = [s for s in VALIDATION_SEEDS if TYPES[s % len(TYPES)] in KINDS]
    answers = evaluate(checkpoint, seeds)["answers"]
    for kind in KINDS:
        table = collections.Counter()
        for s in seeds:
            if TYPES[s % len(TYPES)] == kind:
                got = answers[f"toy-{s}"]
                given = OPTIONS[kind][LETTERS.index(got)] if got in LETTERS else "unparsed"
                table[make_sample(s).answer_text, given] += 1
        columns = [*OPTIONS[kind], "unparsed"]
        print(f"{checkpoint}, {kind} (rows: true; columns: answered) " + " ".join(f"{c:>8}" for c in columns))
        for true in OPTIONS[kind]:
            print(f"  {true:>8} " + " ".join(f"{table[true, c]:>8}" for c in columns))


if __name__ == "__main__":
    main()
