"""accuracy.json (and train.json's "accuracy") for a checkpoint trained with `--eval 0`: what
`python -m stc.toy.train` writes with `--eval 100` (the first 100 held-out questions,
uncompressed, one thread; the first `CHECK_ITEMS` answers are what tests/test_toy.py checks).

    python toy/attempts/write_accuracy.py CHECKPOINT
"""
import json
import sys
import time
from pathlib import Path

import torch

from stc.toy.data import TEST_SEEDS
from stc.toy.train import evaluate, write_accuracy


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    t = time.perf_counter()
    accuracy = evaluate(out, TEST_SEEDS[:100])
    write_accuracy(out, accuracy)
    meta = json.loads((out / "train.json").read_text())
    meta["seconds"]["eval"] = round(time.perf_counter() - t, 1)
    meta["accuracy"] = {k: v for k, v in accuracy.items() if k != "answers"}
    (out / "train.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta["accuracy"]))


if __name__ == "__main__":
    main()
