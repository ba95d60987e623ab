"""Is count memorising its 800 native clips? The committed weights, trained further on clips they
never saw, against the longer run on the same clips.

    python toy/attempts/fresh_native.py OUT [STEPS] [POOL_SEED]     # default 350 steps, pool seed 7

Loads `toy/llava-onevision` (the committed weights), leaves its projector as it is (no
re-standardising) and runs one more native phase (`stc.toy.stages.PHASES[-1]`: batch 8, 14 x 14
tokens a frame, lr 5e-4 with a cosine) of STEPS steps on a pool of 800 new 16-frame clips at the
held-out scale (1x), drawn with generator key (POOL_SEED, 1414, 16): clips none of the committed
pools holds (theirs are seed 0). The eighth session's longer run (650 native steps on the SAME
800 clips) halved count's training loss without moving its validation accuracy (56 -> 60 of
50 questions); if new clips move it, the next recipe needs a bigger native pool, not more steps.
Judged only on the validation seeds (`validate.py OUT OUT.json`); no held-out question is
answered and nothing here replaces the committed weights (their recipe is one command from a
seed; this is a fine-tune).
"""
import sys
import time
from pathlib import Path

import torch

from transformers import LlavaOnevisionForConditionalGeneration

import stc.toy.stages as stages
from stc.models.tiny import TINY_LLAVA_ONEVISION, tiny_processor
from stc.toy.stages import FRAMES, PHASES, train_llm
from stc.toy.train import _write_curve, save

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    out = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 350
    pool_seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    torch.set_num_threads(2)
    path = ROOT / "toy" / "llava-onevision"
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    processor = tiny_processor(TINY_LLAVA_ONEVISION)  # what `build_toy` trains with (torchvision-free)
    stages.standardize_projector = lambda *a, **k: None  # the committed projector stays as trained
    phase = stages.Phase("fresh", "fresh", steps=steps, batch=8, lr=PHASES[-1].lr, warmup=PHASES[-1].warmup,
                         native=1.0)
    t0 = time.perf_counter()
    curve = train_llm(model, processor, seed=pool_seed, phases=(phase,), pools={"fresh": (800, FRAMES, 1.0)})
    out.mkdir(parents=True, exist_ok=True)
    save(model, processor, out)
    _write_curve(curve, out)
    print(f"{out}: {steps} steps on 800 new native clips (pool seed {pool_seed}), "
          f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
