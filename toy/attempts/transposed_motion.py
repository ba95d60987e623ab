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
OPTIONS_MOTION = list(OPTIONS["motion"])


def _swap_tokens(module, args, out):
    """Forward hook on the projector: rows <-> columns of each frame's [27 x 27] token grid."""
    side = int(round(out.shape[1] ** 0.5))
    return out.unflatten(1, (side, side)).transpose(1, 2).flatten(1, 2)


def _given(llm, sample, frames, path: Path) -> str | None:
    """The direction ``llm`` answers for ``frames`` (written to path), or None if unparsed."""
    write_mp4(frames, path)
    text = llm.answer(str(path), build_prompt(sample.question, OPTIONS_MOTION), max_new_tokens=16,
                      num_frames=len(frames)).text
    letter = parse_answer(text, OPTIONS_MOTION)
    return OPTIONS_MOTION[LETTERS.index(letter)] if letter is not None else None


def main() -> None:
    checkpoint = sys.argv[1]
    torch.set_num_threads(2)
    plain = load(checkpoint, device="cpu", dtype="float32")
    hooked = load(checkpoint, device="cpu", dtype="float32")  # its own model and cache
    hooked.model.model.multi_modal_projector.register_forward_hook(_swap_tokens)
    counts = collections.Counter()  # (view, drawn direction, "total" | "drawn" | "swapped")
    with tempfile.TemporaryDirectory(prefix="stc-transposed-") as tmp:
        root = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp)
        for s in VALIDATION_SEEDS:
            if TYPES[s % len(TYPES)] != "motion":
                continue
            sample = make_sample(s)
            d = sample.answer_text
            views = (("drawn", plain, sample.frames), ("transposed", plain, sample.frames.transpose(0, 2, 1, 3)),
                     ("tokens transposed after the tower", hooked, sample.frames))
            for view, llm, frames in views:
                given = _given(llm, sample, frames, root / f"{view.split()[0]}-{view.count(' ')}-{s}.mp4")
                counts[view, d, "total"] += 1
                counts[view, d, "drawn"] += given == d
                counts[view, d, "swapped"] += given == SWAP[d]
    # drawn: the right answer is the drawn direction; transposed clips: the swapped one;
    # transposed tokens: both are reported
    for view, right in (("drawn", "drawn"), ("transposed", "swapped")):
        cells = ", ".join(f"{d} {counts[view, d, right]}/{counts[view, d, 'total']}" for d in OPTIONS_MOTION)
        print(f"{checkpoint}, {view}: drawn direction -> right answers: {cells}")
    view = "tokens transposed after the tower"
    cells = ", ".join(f"{d}: drawn {counts[view, d, 'drawn']}, swapped {counts[view, d, 'swapped']} of "
                      f"{counts[view, d, 'total']}" for d in OPTIONS_MOTION)
    print(f"{checkpoint}, {view}: {cells}")


if __name__ == "__main__":
    main()
