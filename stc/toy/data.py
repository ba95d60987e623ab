"""Synthetic video QA, deterministic by seed: shapes on grey textured backgrounds, written as mp4.

Each seed gives one clip (16 frames of 384x384 at 4 fps, H.264: 3,136 visual tokens + 1 for
LLaVA-OneVision; 16 rather than the paper's 32 so that the toy trains on two CPU cores) and one
four-way multiple-choice question whose evidence sits where a token compressor can lose it.
Every clip has clutter: 2-6 grey shapes, one or two of them drifting a few pixels a frame, so
that no two frames are identical and a compressor has many non-redundant tokens to choose from.
Each kind of shape has its own surface (circles plain, squares striped across, triangles
striped up and down, crosses chequered), so that a single patch of a shape names its kind, as a
pretrained encoder's token names the object it lies on.

    colour  a detail in one place: "What colour is the small shape?" A small (36-48 px, 1% of
            the frame, 2-4 of its 196 pooled tokens) saturated shape, still in every frame.
    flash   a needle in one frame: "Which shape appeared briefly?" A coloured shape shown in
            exactly one frame (never the first or the last).
    motion  something spread over time: "Which way does the ball move?" A ball crossing the
            frame left, right, up or down; any single frame says nothing.
    count   a repeated event: "How many times does the red square flash?" A red square shown in
            1-4 single frames, each time at another place; half the clips also hold a still
            square of another colour.
    order   temporal order: "Which shape appeared first?" Two coloured shapes of different
            kinds, each shown for 1-2 frames, one after the other; the answer is the earlier.

The question type is ``TYPES[seed % 5]``, so any run of seeds is balanced. Each type's options
are in a fixed order (`OPTIONS`), so the answer's letter is a function of what the clip shows.
The answer is uniform over the four letters. A clip can have fewer frames than `FRAMES` (down
to `MIN_FRAMES` of its type, one for colour: a single image): the trainer reads clips of 1 to
16 frames, as real Video-LLMs are trained on images and short and long clips.

Besides the pixels, a `Sample` holds what was drawn where (`labels`: per pixel, the kind of
shape and its colour) for pretraining the vision tower, and the frames that hold the answer's
evidence (`events`, `evidence`), for measuring what a compressor kept.

Clips go through `write_mp4` and are read back with `stc.video.load_video`, the path every
user upload takes. `write_manifest` writes the clips and a JSON-lines manifest that
`python -m stc.eval` reads:

    python -m stc.toy.data runs/toy-test --seeds 1000000:1000500
    python -m stc.eval runs/toy-test/manifest.jsonl --model toy/llava-onevision

Seeds: the trainer draws from [0, 1_000_000) (`TRAIN_SEEDS`); the held-out test seeds are
[1_000_000, 1_000_500) (`TEST_SEEDS`, 100 per type); the demo's examples are 2,000,000 + i.
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
    "MIN_FRAMES",
    "OPTIONS",
    "QUESTIONS",
    "SHAPES",
    "SIZE",
    "TEST_SEEDS",
    "TRAIN_SEEDS",
    "TYPES",
    "Sample",
    "make_sample",
    "question",
    "write_manifest",
    "write_mp4",
]

FRAMES = 16
SIZE = 384  # SigLIP's input side: the processor's resize is the identity
FPS = 4
TRAIN_SEEDS = range(0, 1_000_000)
TEST_SEEDS = range(1_000_000, 1_000_500)
# Chooses between trained weights (uncompressed accuracy only, toy/attempts/validate.py); no
# accuracy table and no test asks their questions.
VALIDATION_SEEDS = range(3_000_000, 3_000_250)

TYPES = ("colour", "flash", "motion", "count", "order")
MIN_FRAMES = {"colour": 1, "flash": 3, "motion": 2, "count": 4, "order": 2}
COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 70, 230), "yellow": (235, 215, 20)}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "up", "down")
COUNTS = ("one", "two", "three", "four")
OPTIONS = {
    "colour": tuple(COLOURS),
    "flash": SHAPES,
    "motion": DIRECTIONS,
    "count": COUNTS,
    "order": SHAPES,
}
QUESTIONS = {
    "colour": "What colour is the small shape?",
    "flash": "Which shape appeared briefly?",
    "motion": "Which way does the ball move?",
    "count": "How many times does the red square flash?",
    "order": "Which shape appeared first?",
}
LETTERS = "ABCD"
# Label classes (Sample.labels): 0 is the background; shapes 1-4 in SHAPES order; colours 1 =
# grey, 2-5 in COLOURS order.
GREY = 1
# The demo's synthetic examples (examples/toy_<type>.mp4, written by examples/make_examples.py):
# the first seed of each type from 2,000,000 (neither a training nor a held-out seed).
DEMO_SEEDS = {kind: 2_000_000 + i for i, kind in enumerate(TYPES)}


@dataclass
class Sample:
    """One clip and its question.

    frames: uint8 [T, H, W, 3] as rendered (before encoding). labels: uint8 [T, H, W, 2], per
    pixel the shape class (0 none, 1 + SHAPES index) and the colour class (0 none, 1 grey,
    2 + COLOURS index) of the object drawn there. events: the frames of each event the answer
    rests on (flash: the flash; count: one group per flash; order: the first shape's frames,
    then the second's; colour and motion: none, every frame shows the evidence).
    """

    seed: int
    kind: str
    question: str
    options: tuple[str, ...]
    answer: str  # the correct letter
    frames: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    events: tuple[tuple[int, ...], ...] = ()

    @property
    def evidence(self) -> tuple[int, ...]:
        """The frames that hold the answer's evidence, in order (every frame when no event)."""
        if not self.events:
            return tuple(range(len(self.frames)))
        return tuple(sorted({f for event in self.events for f in event}))

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]

    def record(self, video: str) -> dict:
        """The manifest line (stc.eval's schema) for this sample's clip at ``video``."""
        return {"id": f"toy-{self.seed}", "video": video, "question": self.question,
                "options": list(self.options), "answer": self.answer, "type": self.kind}


# -- drawing -------------------------------------------------------------------------------------
def _mask(shape: str, cx: float, cy: float, size: float) -> tuple[slice, slice, np.ndarray]:
    """(rows, cols, mask): ``shape`` centred at (cx, cy), ``size`` px across, as a boolean mask
    of the frame's window [rows, cols] around it (the rest of the frame is outside the shape)."""
    r = size / 2
    y0, y1 = max(0, int(cy - r) - 1), min(SIZE, int(cy + r) + 2)
    x0, x1 = max(0, int(cx - r) - 1), min(SIZE, int(cx + r) + 2)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    if shape == "circle":
        mask = dx * dx + dy * dy <= r * r
    elif shape == "square":
        mask = (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    elif shape == "triangle":  # pointing up: apex at the top, base at the bottom
        mask = (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.58)
    elif shape == "cross":
        arm = r * 0.3
        mask = ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return slice(y0, y1), slice(x0, x1), mask


# Each kind of shape has its own surface, so that one 14 px patch of it names its kind (as a
# pretrained encoder's token names the object it lies on): circles are plain, squares striped
# across, triangles striped up and down, crosses chequered; 4 px bands, brightness x 0.7 / 1.3.
_SURFACE_BAND = 4
_SURFACE_DEPTH = 0.3


def _surface(shape: str, rows: slice, cols: slice, cx: float, cy: float) -> np.ndarray:
    """float32 [rows, cols] brightness factors of ``shape``'s surface, fixed to the shape."""
    dy = ((np.arange(rows.start, rows.stop) - int(cy)) // _SURFACE_BAND)[:, None]
    dx = ((np.arange(cols.start, cols.stop) - int(cx)) // _SURFACE_BAND)[None, :]
    if shape == "circle":
        return np.ones((len(dy), dx.shape[1]), np.float32)
    band = {"square": dy + 0 * dx, "triangle": dx + 0 * dy, "cross": dx + dy}[shape] % 2
    return np.where(band == 1, 1 + _SURFACE_DEPTH, 1 - _SURFACE_DEPTH).astype(np.float32)


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


_MAX_SIDE = 160.0  # the largest an enlarged object gets (`make_sample`'s scale)


def _place(rng: np.random.Generator, size: float, taken: list[tuple[float, float, float]]) -> tuple[float, float]:
    """A centre for an object ``size`` px across, inside the frame and off the others."""
    margin = size / 2 + 6
    for _ in range(100):
        cx, cy = rng.uniform(margin, SIZE - margin, size=2)
        if all((cx - x) ** 2 + (cy - y) ** 2 > ((size + s) / 2 + 8) ** 2 for x, y, s in taken):
            break
    taken.append((float(cx), float(cy), size))
    return float(cx), float(cy)


class _Canvas:
    """The clip being drawn: float pixels [T, S, S, 3] and labels [T, S, S, 2]."""

    def __init__(self, rng: np.random.Generator, frames: int):
        self.video = np.repeat(_background(rng)[None], frames, axis=0)
        self.labels = np.zeros((frames, SIZE, SIZE, 2), np.uint8)

    def paint(self, f: int, shape: str, cx: float, cy: float, size: float, colour: str | float) -> None:
        """Draw ``shape`` in frame ``f``: a named colour (COLOURS) or a grey level."""
        rows, cols, mask = _mask(shape, cx, cy, size)
        if isinstance(colour, str):
            rgb, colour_class = np.asarray(COLOURS[colour], np.float32), 2 + list(COLOURS).index(colour)
        else:
            rgb, colour_class = np.full(3, colour, np.float32), GREY
        painted = rgb * _surface(shape, rows, cols, cx, cy)[..., None]
        self.video[f, rows, cols][mask] = np.minimum(painted[mask], 255.0)
        self.labels[f, rows, cols][mask] = (1 + SHAPES.index(shape), colour_class)


def _clutter(rng: np.random.Generator, canvas: _Canvas, count: int, sizes: tuple[float, float], taken,
             drifting: int) -> None:
    """``count`` grey shapes of random kinds; the first ``drifting`` of them move 1.5-4 px a frame
    in a random direction (wrapping never: they stay inside the frame)."""
    frames = canvas.video.shape[0]
    for i in range(count):
        size = float(rng.uniform(*sizes))
        shape, level = SHAPES[int(rng.integers(4))], float(rng.uniform(40, 215))
        cx, cy = _place(rng, size, taken)
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4.0) if i < drifting else 0.0
        lo, hi = size / 2 + 2, SIZE - size / 2 - 2
        for f in range(frames):
            x = float(np.clip(cx + np.cos(angle) * speed * f, lo, hi))
            y = float(np.clip(cy + np.sin(angle) * speed * f, lo, hi))
            canvas.paint(f, shape, x, y, size, level)


def _question(seed: int) -> tuple[str, int, np.random.Generator]:
    """(type, answer index, the generator that draws the rest of the clip) of ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    rng = np.random.default_rng([int(seed), 20])
    return TYPES[int(seed) % len(TYPES)], int(rng.integers(4)), rng


def question(seed: int) -> tuple[str, str]:
    """(type, answer letter) of ``seed``'s question, without drawing its clip: the same as
    ``make_sample(seed, frames, scale)``'s ``kind`` and ``answer`` for every frames and scale
    (the answer is drawn first)."""
    kind, answer, _ = _question(seed)
    return kind, LETTERS[answer]


def make_sample(seed: int, frames: int = FRAMES, scale: float = 1.0) -> Sample:
    """The clip and question of ``seed`` (any int >= 0) with ``frames`` frames (at least the
    type's `MIN_FRAMES`): same seed, frames and scale, same sample, bit for bit.

    ``scale`` > 1 draws the objects the question is about that much larger (at most a
    `_MAX_SIDE` or their own size; the clutter keeps its size): the trainer's curriculum
    starts with large evidence. Evaluation clips use 1."""
    kind, answer, rng = _question(seed)
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not MIN_FRAMES[kind] <= frames <= 64:
        raise ValueError(f"a {kind} clip has {MIN_FRAMES[kind]} to 64 frames, got {frames!r}")
    if not 1.0 <= scale <= 6.0:
        raise ValueError(f"scale must be in [1, 6], got {scale!r}")
    frames = int(frames)

    def big(size: float) -> float:
        return min(size * scale, max(size, _MAX_SIDE))

    canvas = _Canvas(rng, frames)
    taken: list = []
    colour_names = list(COLOURS)
    events: tuple[tuple[int, ...], ...] = ()

    if kind == "colour":
        size = big(float(rng.uniform(36, 48)))
        shape = SHAPES[int(rng.integers(4))]
        cx, cy = _place(rng, size, taken)
        _clutter(rng, canvas, int(rng.integers(3, 7)), (50, 90), taken, drifting=int(rng.integers(1, 3)))
        for f in range(frames):
            canvas.paint(f, shape, cx, cy, size, colour_names[answer])
    elif kind == "flash":
        size = big(float(rng.uniform(64, 100)))
        cx, cy = _place(rng, size, taken)
        colour = colour_names[int(rng.integers(4))]
        when = int(rng.integers(1, frames - 1))
        _clutter(rng, canvas, int(rng.integers(3, 6)), (50, 90), taken, drifting=int(rng.integers(1, 3)))
        canvas.paint(when, SHAPES[answer], cx, cy, size, colour)
        events = ((when,),)
    elif kind == "motion":
        size = big(float(rng.uniform(44, 60)))
        colour = colour_names[int(rng.integers(4))]
        margin = size / 2 + 4
        start, end = rng.uniform(margin, margin + 40), rng.uniform(SIZE - margin - 40, SIZE - margin)
        across = float(rng.uniform(margin, SIZE - margin))
        _clutter(rng, canvas, int(rng.integers(2, 5)), (40, 70), taken, drifting=1)  # the ball passes over them
        direction = DIRECTIONS[answer]
        if direction in ("left", "up"):
            start, end = SIZE - start, SIZE - end
        for f in range(frames):
            along = start + (end - start) * f / max(1, frames - 1)
            cx, cy = (along, across) if direction in ("left", "right") else (across, along)
            canvas.paint(f, "circle", cx, cy, size, colour)
    elif kind == "count":
        times = answer + 1
        slots = sorted(int(s) for s in rng.choice(frames, size=times, replace=False))  # one frame each
        if rng.random() < 0.5:  # a still square of another colour: the question is about red
            size = float(rng.uniform(50, 70))
            cx, cy = _place(rng, size, taken)
            other = colour_names[1 + int(rng.integers(3))]
            for f in range(frames):
                canvas.paint(f, "square", cx, cy, size, other)
        _clutter(rng, canvas, int(rng.integers(2, 5)), (40, 70), taken, drifting=int(rng.integers(1, 3)))
        for f in slots:
            size = big(float(rng.uniform(50, 70)))
            cx, cy = _place(rng, size, list(taken))
            canvas.paint(f, "square", cx, cy, size, "red")
        events = tuple((f,) for f in slots)
    else:  # order
        second = SHAPES[(answer + 1 + int(rng.integers(3))) % 4]
        spans = [1 + int(rng.random() < 0.5) if frames >= 4 else 1 for _ in range(2)]
        t1 = int(rng.integers(0, frames - spans[0] - spans[1] + 1))
        t2 = int(rng.integers(t1 + spans[0], frames - spans[1] + 1))
        shown = []
        for shape, t, span in ((SHAPES[answer], t1, spans[0]), (second, t2, spans[1])):
            size = big(float(rng.uniform(64, 100)))
            cx, cy = _place(rng, size, taken)
            colour = colour_names[int(rng.integers(4))]
            shown.append((shape, t, span, cx, cy, size, colour))
        _clutter(rng, canvas, int(rng.integers(2, 5)), (40, 70), taken, drifting=int(rng.integers(1, 3)))
        for shape, t, span, cx, cy, size, colour in shown:
            for f in range(t, t + span):
                canvas.paint(f, shape, cx, cy, size, colour)
        events = (tuple(range(t1, t1 + spans[0])), tuple(range(t2, t2 + spans[1])))

    # sensor noise, then rounding to uint8: clip(rint(video + 3 * noise)) computed in place
    video = canvas.video  # float64 (the background's); the noise is float32, as drawn
    video += 3 * rng.standard_normal(size=video.shape, dtype=np.float32)
    np.rint(video, out=video)
    np.maximum(video, 0, out=video)
    pixels = np.minimum(video, 255, out=video).astype(np.uint8)
    return Sample(int(seed), kind, QUESTIONS[kind], OPTIONS[kind], LETTERS[answer], pixels, canvas.labels, events)


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
