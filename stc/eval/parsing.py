"""The option letter a free-form answer picks (`parse_answer`)."""

from __future__ import annotations

import re
from typing import Iterable

from .text import LETTERS, norm


_PHRASE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|would be|should be)?\s*[:\-]?\s*[\(\[]?([A-Za-z])(?![A-Za-z])([\)\]\.:]?)",
    re.I,
)
_LEADING = re.compile(r"^[\(\[]?([A-Za-z])(?:[\)\]\.:](?:\s|$)|$)")


def parse_answer(text: str, options: Iterable[str]) -> str | None:
    """The option letter a free-form answer picks, or None when it picks none (or several).

    In order of trust: a lone letter ("B", "b", "(B)", "B."); a leading label ("C) foo",
    "(b) foo"), also after "Answer:"; a phrase ("The answer is B", "Best option: (C)"); an
    option's text (the whole answer, or the only option whose text it contains); a lone
    capital letter standing as a word ("I pick D"), unless it reads as an English word
    ("A man ...", "I think ...").
    """
    options = tuple(options)
    letters = LETTERS[: len(options)]
    if not isinstance(text, str):
        return None
    s = text.strip().strip("*_`\"' ")
    if not s:
        return None

    def ok(letter: str) -> str | None:
        letter = letter.upper()
        return letter if letter in letters else None

    # a lone letter, or a label at the start, also after an "Answer:" / "Best option:" prefix
    body = re.sub(r"^(?:the\s+)?(?:final\s+|best\s+|correct\s+)?(?:answer|option|choice)\s*[:\-]\s*", "", s, flags=re.I)
    m = _LEADING.match(body)
    if m and ok(m.group(1)):
        return ok(m.group(1))
    # "the answer is B": a capital, or a lower-case letter that is set off ("is b." / "is (b)")
    for m in _PHRASE.finditer(s):
        letter, mark = m.group(1), m.group(2)
        end = s[m.end() :].strip()
        if ok(letter) and (letter.isupper() or mark or not end):
            return ok(letter)
    # an option's text: the whole answer, or contained in it (the only one, longest wins ties
    # between an option and its own prefix)
    said = norm(s)
    texts = [norm(o) for o in options]
    exact = [i for i, t in enumerate(texts) if t and t == said]
    if len(exact) == 1:
        return letters[exact[0]]
    contained = [i for i, t in enumerate(texts) if t and re.search(rf"(?<!\w){re.escape(t)}(?!\w)", said)]
    contained = [i for i in contained if not any(j != i and texts[i] in texts[j] for j in contained)]
    if len(contained) == 1:
        return letters[contained[0]]
    # a lone capital letter used as a word; "A man", "I think" are English, not answers
    found = set()
    for m in re.finditer(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", s):
        after = s[m.end() :]
        before = s[: m.start()]
        if m.group(1) in "AI" and re.match(r"\s+(?!(?:or|and)\b)[a-z]", after) and not before.endswith(("(", "[")):
            continue
        if ok(m.group(1)):
            found.add(m.group(1))
    if len(found) == 1:
        return found.pop()
    return None
