"""Pilot (issue 20, fifth session): answers as the option's letter instead of its text, with the
unpadded batches and the committed tower recipe; stage A, then stage B's 4-frame phase only,
printing the loss per type every 20 steps (toy/attempts/README.md has the result).

    python toy/attempts/letters_pilot.py   # ~13 min on 2 cores
"""

import torch

import stc.toy.stages as stages
from stc.toy.data import LETTERS, OPTIONS
from stc.toy.model import build_toy

_text_answer = stages.Prompts.answer


def letter_answer(self, kind, text, visual):
    """The prompt, then the letter of the option whose text stage B would have trained on."""
    return _text_answer(self, kind, LETTERS[OPTIONS[kind].index(text)], visual)


if __name__ == "__main__":
    torch.set_num_threads(2)
    stages.Prompts.answer = letter_answer
    model, processor = build_toy(0)
    stages.pretrain_vision(model, seed=0, steps=300, lr=3e-3)
    stages.train_llm(model, processor, seed=0, phases=(stages.PHASES[0],), pools={"short": stages.POOLS["short"]})
