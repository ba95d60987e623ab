"""Synthetic video QA, deterministic by seed: shapes on grey textured backgrounds, written as mp4.

Each seed gives one clip (8 frames of 384x384 at 4 fps, H.264: 1,568 visual tokens + 1 for
LLaVA-OneVision; 8 rather than 16-32 frames so the toy trains on two CPU cores) and one four-way
multiple-choice question whose evidence sits where a token compressor can lose it:

    colour  a detail in one place: "What colour is the small shape?" A small (36-48 px, 1% of
            the frame, 2-4 of its 196 pooled tokens) saturated shape, still in every frame, among larger
            grey distractors.
    flash   an event in one frame: "Which shape appeared briefly?" A large coloured shape
            shown in exactly one frame (never the first or the last) among still grey ones.
    motion  something spread over time: "Which way does the ball move?" A ball crossing the
            frame left, right, up or down; any single frame says nothing.
    count   something spread over time: "How many times does the red square flash?" A red
            square shown in 1-4 single frames, each time at another place.

The question type is ``TYPES[seed % 4]``, so any run of seeds is balanced. Each type's options
are in a fixed order (`OPTIONS`), so the answer's letter is a function of what the clip shows:
the toy model never has to read its options, only the question. The answer is uniform over the
four letters.

Clips go through `write_mp4` and are read back with `stc.video.load_video`, the path every
user upload takes. `write_manifest` writes the clips and a JSON-lines manifest that
`python -m stc.eval` reads:

    python -m stc.toy.data runs/toy-test --seeds 1000000:1000300
    python -m stc.eval runs/toy-test/manifest.jsonl --model toy/llava-onevision

Seeds: the trainer draws from [0, 1_000_000) (`TRAIN_SEEDS`); the held-out test seeds are
[1_000_000, 1_000_300) (`TEST_SEEDS`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "COLOURS",
    "DEMO_SEEDS",
    "DIRECTIONS",
    "FPS",
    "FRAMES",
    "OPTIONS",
    "QUESTIONS",
    "SHAPES",
    "SIZE",
    "TEST_SEEDS",
    "TRAIN_SEEDS",
    "TYPES",
    "Sample",
    "make_sample",
    "write_manifest",
    "write_mp4",
]

FRAMES = 8
SIZE = 384  # SigLIP's input side: the processor's resize is the identity
FPS = 4
TRAIN_SEEDS = range(0, 1_000_000)
TEST_SEEDS = range(1_000_000, 1_000_300)

TYPES = ("colour", "flash", "motion", "count")
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 70, 230), "yellow": (235, 215, 20)}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = ("one", "two", "three", "four")
OPTIONS = {
    "colour": tuple(COLOURS),
    "flash": SHAPES,
    "motion": DIRECTIONS,
    "count": COUNTS,
}
QUESTIONS = {
    "colour": "What colour is the small shape?",
    "flash": "Which shape appeared briefly?",
    "motion": "Which way does the ball move?",
    "count": "How many times does the red square flash?",
}
LETTERS = "ABCD"
# The demo's synthetic examples (examples/toy_<type>.mp4, written by examples/make_examples.py):
# for each type the committed toy learnt, the first seed of that type from 2,000,000 (neither a
# training nor a held-out seed), whatever the toy answers on it.
DEMO_SEEDS = {"colour": 2_000_000, "count": 2_000_003}


@dataclass
class Sample:
    """One clip and its question. frames: uint8 [T, H, W, 3] as rendered (before encoding)."""

    seed: int
    kind: str
    question: str
    options: tuple[str, ...]
    answer: str  # the correct letter
    frames: np.ndarray = field(repr=False)

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]

    def record(self, video: str) -> dict:
        """The manifest line (stc.eval's schema) for this sample's clip at ``video``."""
        return {"id": f"toy-{self.seed}", "video": video, "question": self.question,
                "options": list(self.options), "answer": self.answer, "type": self.kind}


# -- drawing -------------------------------------------------------------------------------------
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _mask(shape: str, cx: float, cy: float, size: float) -> np.ndarray:
    """Boolean [SIZE, SIZE] mask of ``shape`` centred at (cx, cy), ``size`` px across."""
    r = size / 2
    dx, dy = _XX - cx, _YY - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # pointing up: apex at the top, base at the bottom
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.58)
    if shape == "cross":
        arm = r * 0.3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator) -> np.ndarray:
    """A grey smooth texture plus fixed fine noise: float32 [SIZE, SIZE, 3] in 0..255.

    Grey, so colour in a clip is always an object's (a colour question is about the object,
    not about a tinted background)."""
    cells = int(rng.integers(3, 8))
    coarse = np.repeat(rng.uniform(60, 190, size=(cells, cells, 1)).astype(np.float32), 3, axis=2)
    # bilinear upsampling of the coarse grid
    pos = (np.arange(SIZE, dtype=np.float32) + 0.5) / SIZE * (cells - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    w = (pos - i0)[:, None, None]
    rows = coarse[i0] * (1 - w) + coarse[i0 + 1] * w  # [SIZE, cells, 3]
    wx = w.transpose(1, 0, 2)
    img = rows[:, i0] * (1 - wx) + rows[:, i0 + 1] * wx
    return img + 8 * rng.standard_normal(size=(SIZE, SIZE, 1), dtype=np.float32)


def _place(rng: np.random.Generator, size: float, taken: list[tuple[float, float, float]]) -> tuple[float, float]:
    """A centre for an object ``size`` px across, inside the frame and off the others."""
    margin = size / 2 + 6
    for _ in range(100):
        cx, cy = rng.uniform(margin, SIZE - margin, size=2)
        if all((cx - x) ** 2 + (cy - y) ** 2 > ((size + s) / 2 + 8) ** 2 for x, y, s in taken):
            taken.append((cx, cy, size))
            return float(cx), float(cy)
    taken.append((cx, cy, size))
    return float(cx), float(cy)


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    img[mask] = np.asarray(colour, np.float32)


def _distractors(rng: np.random.Generator, count: int, sizes: tuple[float, float], taken) -> list:
    """Still grey shapes of random kinds: (mask, grey level) each."""
    out = []
    for _ in range(count):
        size = float(rng.uniform(*sizes))
        cx, cy = _place(rng, size, taken)
        out.append((_mask(SHAPES[int(rng.integers(4))], cx, cy, size), float(rng.uniform(40, 215))))
    return out


def _paint_still(video: np.ndarray, still: list) -> None:
    for mask, level in still:
        video[:, mask] = level


def make_sample(seed: int, frames: int = FRAMES, scale: float = 1.0) -> Sample:
    """The clip and question of ``seed`` (any int >= 0): same seed, same sample, bit for bit.

    ``scale`` > 1 draws every object that much larger (the same draws otherwise): the
    trainer's curriculum starts with large objects. Evaluation clips use 1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if frames < 8:
        raise ValueError(f"frames must be at least 8, got {frames}")
    if not 1.0 <= scale <= 6.0:
        raise ValueError(f"scale must be in [1, 6], got {scale!r}")
    rng = np.random.default_rng([int(seed), 14])

    def big(size: float, limit: float = 260.0) -> float:
        return min(size * scale, max(size, limit))

    kind = TYPES[int(seed) % len(TYPES)]
    answer = int(rng.integers(4))
    bg = _background(rng)
    taken: list = []
    video = np.repeat(bg[None], frames, axis=0)

    if kind == "colour":
        size = big(float(rng.uniform(36, 48)))
        shape = SHAPES[int(rng.integers(4))]
        cx, cy = _place(rng, size, taken)
        still = _distractors(rng, int(rng.integers(2, 4)), (50, 90), taken)
        _paint_still(video, still)
        video[:, _mask(shape, cx, cy, size)] = list(COLOURS.values())[answer]
    elif kind == "flash":
        size = big(float(rng.uniform(70, 110)))
        cx, cy = _place(rng, size, taken)
        colour = list(COLOURS.values())[int(rng.integers(4))]
        when = int(rng.integers(1, frames - 1))
        still = _distractors(rng, int(rng.integers(1, 3)), (50, 90), taken)
        _paint_still(video, still)
        _paint(video[when], _mask(SHAPES[answer], cx, cy, size), colour)
    elif kind == "motion":
        size = big(float(rng.uniform(40, 56)), 150.0)
        colour = list(COLOURS.values())[int(rng.integers(4))]
        margin = size / 2 + 4
        start, end = rng.uniform(margin, margin + 40), rng.uniform(SIZE - margin - 40, SIZE - margin)
        across = float(rng.uniform(margin, SIZE - margin))
        still = _distractors(rng, int(rng.integers(1, 3)), (40, 70), taken)
        _paint_still(video, still)  # the ball passes in front of them
        direction = DIRECTIONS[answer]
        if direction in ("left", "up"):
            start, end = SIZE - start, SIZE - end
        for f in range(frames):
            along = start + (end - start) * f / (frames - 1)
            cx, cy = (along, across) if direction in ("left", "right") else (across, along)
            _paint(video[f], _mask("circle", cx, cy, size), colour)
    else:  # count
        times = answer + 1
        slots = rng.choice(frames, size=times, replace=False)  # one frame each, at its own place
        still = _distractors(rng, int(rng.integers(1, 3)), (40, 70), taken)
        _paint_still(video, still)
        for f in sorted(int(s) for s in slots):
            size = big(float(rng.uniform(50, 70)), 150.0)
            cx, cy = _place(rng, size, list(taken))
            _paint(video[f], _mask("square", cx, cy, size), COLOURS["red"])

    video += 3 * rng.standard_normal(size=video.shape, dtype=np.float32)  # sensor noise, per frame
    pixels = np.clip(np.rint(video), 0, 255).astype(np.uint8)
    return Sample(int(seed), kind, QUESTIONS[kind], OPTIONS[kind], LETTERS[answer], pixels)


# -- files ---------------------------------------------------------------------------------------
def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: int = FPS) -> Path:
    """Encode uint8 [T, H, W, 3] frames as H.264 (yuv420p, CRF 18, one thread: the same bytes
    every time on one build of libx264)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_manifest(out: str | os.PathLike, seeds, frames: int = FRAMES) -> Path:
    """Write ``out/clips/toy-<seed>.mp4`` and ``out/manifest.jsonl`` (stc.eval's format, plus a
    ``type`` field) for ``seeds``; returns the manifest's path. Clips already there are kept."""
    out = Path(out)
    lines = []
    for seed in seeds:
        sample = make_sample(int(seed), frames)
        rel = f"clips/toy-{sample.seed}.mp4"
        if not (out / rel).is_file():
            tmp = out / (rel + ".part.mp4")
            write_mp4(sample.frames, tmp)
            os.replace(tmp, out / rel)
        lines.append(json.dumps(sample.record(rel)))
    path = out / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _seeds(text: str) -> range:
    start, _, stop = text.partition(":")
    try:
        return range(int(start), int(stop)) if stop else range(int(start), int(start) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be START:STOP or one seed, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stc.toy.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for clips/ and manifest.jsonl")
    parser.add_argument("--seeds", type=_seeds, default=TEST_SEEDS,
                        help=f"START:STOP (default: the held-out {TEST_SEEDS.start}:{TEST_SEEDS.stop})")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"frames per clip (default: {FRAMES})")
    args = parser.parse_args(argv)
    path = write_manifest(args.out, args.seeds, args.frames)
    print(f"{len(args.seeds)} clip(s) and {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
