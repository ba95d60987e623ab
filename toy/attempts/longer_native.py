"""The committed recipe with a longer last phase: is motion and count still learning?

    python toy/attempts/longer_native.py OUT [NATIVE_STEPS]      # default 650 (committed: 350)

`stc.toy.train.train` from seed 0 with the committed `PHASES`, except that the last ("native")
phase runs NATIVE_STEPS steps (its cosine then decays over them). Stage A and the first two
phases repeat the committed run bit for bit. No held-out question is answered: the checkpoint is
judged only by `validate.py` on the validation seeds, by the rule that chose the committed
weights (toy/attempts/README.md).
"""
import sys
import time
from dataclasses import replace

import torch

from stc.toy.stages import PHASES
from stc.toy.train import train


def main() -> None:
    out = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 650
    torch.set_num_threads(2)
    phases = PHASES[:-1] + (replace(PHASES[-1], steps=steps),)
    t0 = time.perf_counter()
    train(out, seed=0, phases=phases, eval_seeds=())
    print(f"{out}: native phase {steps} steps, {(time.perf_counter() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
