"""Is the toy's horizontal-motion failure about the clips or about the axis? The 50 motion
validation clips (`stc.toy.data.VALIDATION_SEEDS`), each asked as drawn and transposed (rows
and columns swapped: left <-> up, right <-> down), uncompressed, as `stc.eval` asks.

    python toy/attempts/transposed_motion.py CHECKPOINT [OUT_DIR]      # ~3 min on 2 cores

Prints the accuracy per drawn direction, for the clip as drawn and transposed. If horizontal
clips are answered once they are made vertical (and vertical ones fail once made horizontal),
the failure follows the axis of motion in the input, not what the clips show.

A third view separates the tower from the LLM: the clip as drawn, its tokens transposed AFTER
the tower (a forward hook swaps the rows and columns of the projector's 27 x 27 grid, so each
token keeps the features the tower computed at its place, but reaches the LLM in column-major
order). It prints how often the answer is the drawn direction and how often the swapped one:
an LLM that reads direction from the order of its tokens answers the swapped one.
"""
import collections
import sys
import tempfile
from pathlib import Path

import torch

from stc.eval import build_prompt, parse_answer
from stc.models import load
from stc.toy.data import LETTERS, OPTIONS, TYPES, VALIDATION_SEEDS, make_sample, write_mp4

SWAP = {"left": "up", "up": "left", "right": "down", "down": "right"}


def main() -> None:
    checkpoint = sys.argv[1]
    torch.set_num_threads(2)
    llm = load(checkpoint, device="cpu", dtype="float32")
    options = OPTIONS["motion"]
    right = collections.Counter()
    total = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="stc-transposed-") as tmp:
        root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp)
        for s in VALIDATION_SEEDS:
            if TYPES[s % len(TYPES)] != "motion":
                continue
            sample = make_sample(s)
            for view, frames, truth in (("drawn", sample.frames, sample.answer_text),
                                        ("transposed", sample.frames.transpose(0, 2, 1, 3), SWAP[sample.answer_text])):
                path = write_mp4(frames, root / f"{view}-{s}.mp4")
                text = llm.answer(str(path), build_prompt(sample.question, list(options)), max_new_tokens=16,
                                  num_frames=len(frames)).text
                letter = parse_answer(text, list(options))
                key = (view, sample.answer_text)
                total[key] += 1
                right[key] += letter is not None and options[LETTERS.index(letter)] == truth
    for view in ("drawn", "transposed"):
        cells = ", ".join(f"{d} {right[view, d]}/{total[view, d]}" for d in options)
        print(f"{checkpoint}, {view}: drawn direction -> right answers: {cells}")
    tokens_transposed(checkpoint)


def tokens_transposed(checkpoint: str) -> None:
    llm = load(checkpoint, device="cpu", dtype="float32")
    projector = llm.model.model.multi_modal_projector

    def swap(module, args, out):  # [frames, 729, D]: rows <-> columns of the 27 x 27 grid
        side = int(round(out.shape[1] ** 0.5))
        return out.unflatten(1, (side, side)).transpose(1, 2).flatten(1, 2)

    handle = projector.register_forward_hook(swap)
    options = OPTIONS["motion"]
    drawn, swapped, total = collections.Counter(), collections.Counter(), collections.Counter()
    try:
        with tempfile.TemporaryDirectory(prefix="stc-transposed-") as tmp:
            for s in VALIDATION_SEEDS:
                if TYPES[s % len(TYPES)] != "motion":
                    continue
                sample = make_sample(s)
                path = write_mp4(sample.frames, Path(tmp) / f"drawn-{s}.mp4")
                text = llm.answer(str(path), build_prompt(sample.question, list(options)), max_new_tokens=16,
                                  num_frames=len(sample.frames)).text
                letter = parse_answer(text, list(options))
                given = options[LETTERS.index(letter)] if letter is not None else None
                d = sample.answer_text
                total[d] += 1
                drawn[d] += given == d
                swapped[d] += given == SWAP[d]
    finally:
        handle.remove()
    cells = ", ".join(f"{d}: drawn {drawn[d]}, swapped {swapped[d]} of {total[d]}" for d in options)
    print(f"{checkpoint}, tokens transposed after the tower: {cells}")


if __name__ == "__main__":
    main()
