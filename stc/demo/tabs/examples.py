"""The examples under the page: short clips shipped in examples/ (sources and licence in
examples/README.md), the synthetic ones first, asked exactly as the toy model was trained to
read them (question, options, "answer with the letter"): the model the app falls back to
offline answers those for real."""

from __future__ import annotations

from pathlib import Path

from ...eval import build_prompt
from ...toy.data import DEMO_SEEDS, OPTIONS, QUESTIONS

TOY_EXAMPLES = tuple(DEMO_SEEDS)  # the question types the toy learnt (toy/llava-onevision/README.md)


def toy_question(kind: str) -> str:
    """The prompt of one synthetic question type: what `stc.eval` asks and the toy was trained on."""
    return build_prompt(QUESTIONS[kind], OPTIONS[kind], "videomme")


# [clip relative to app.py's folder, question]
EXAMPLES = [
    *([f"examples/toy_{kind}.mp4", toy_question(kind)] for kind in TOY_EXAMPLES),
    ["examples/earth_at_night.mp4", "Which parts of the Earth are lit up as it turns?"],
    ["examples/thanks_for_watching.mp4", "What text appears on the screen, and in which colour?"],
    ["examples/earth_rotation.mp4", "What is shown in this video, and how does it move?"],
]
# What the examples list shows: the synthetic prompts start with the multiple-choice
# instruction, so they are named by their question.
EXAMPLE_LABELS = [f"synthetic clip (toy model): {QUESTIONS[kind]}" for kind in TOY_EXAMPLES] + [
    f"{Path(clip).stem.replace('_', ' ')}: {q}" for clip, q in EXAMPLES[len(TOY_EXAMPLES):]]
