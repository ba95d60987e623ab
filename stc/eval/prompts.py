"""The text after the video for one question, in lmms-eval's format for each benchmark.

The texts lmms-eval 0.7 builds for these benchmarks with its "default" model kwargs, which is
what its llava_onevision and qwen2_5_vl models (and the "stc" plugin) get; the chat template
then puts the video first and this text after it. Kept verbatim so local numbers compare with
the paper's, including lmms-eval's VideoMME wording "and the subtitles" without subtitles.
Every format is the same shape (a head, one labelled line per option, a tail), so each is
written once below as those three strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from .text import LETTERS

_DIRECTLY = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class _Template:
    """``head`` + the options, one ``label`` + text per line + ``tail``. ``head`` may use
    {question} and {letters} ("A, B, C, or D"); ``label`` uses {letter}."""

    head: str
    label: str
    tail: str

    def __call__(self, question: str, options: tuple[str, ...]) -> str:
        lines = "\n".join(self.label.format(letter=LETTERS[i]) + o for i, o in enumerate(options))
        return self.head.format(question=question, letters=_letter_list(len(options))) + lines + self.tail


def _letter_list(n: int) -> str:
    letters = list(LETTERS[:n])
    return " or ".join(letters) if n == 2 else ", ".join(letters[:-1]) + ", or " + letters[-1]


PROMPT_STYLES: dict[str, Callable[[str, tuple[str, ...]], str]] = {
    "videomme": _Template(
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter ({letters}) of the correct option.\n{question}\n",
        "{letter}. ",
        "\n\n" + _DIRECTLY,
    ),
    "mvbench": _Template("Question:{question}\nOption:\n", "({letter}) ", "\nOnly give the best option.\n"),
    "egoschema": _Template("{question}\n", "{letter}. ", "\n" + _DIRECTLY),
    "mlvu": _Template("{question}\n", "({letter}) ", "\nOnly give the best option.\nBest option: ("),
    "longvideobench": _Template("{question}\n", "{letter}. ", "\n" + _DIRECTLY + "\n"),
}


def check_style(style: str) -> str:
    """``style`` if it names a prompt style, else a ValueError listing them."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    return style


def build_prompt(question: str, options: Iterable[str], style: str = "videomme") -> str:
    """The text after the video for one question, in lmms-eval's format for ``style``."""
    return PROMPT_STYLES[check_style(style)](question, tuple(options))
