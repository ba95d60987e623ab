"""The manifest: JSON lines of multiple-choice questions about videos, read and validated.

Shaped like MVBench / VideoMME / EgoSchema; `load_manifest` lists every accepted form. A bad
line is named with its number; every bad line is reported at once.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .prompts import PROMPT_STYLES
from .text import LETTERS, norm


class ManifestError(ValueError):
    """A manifest that cannot be evaluated; the message names every bad line."""



@dataclass(frozen=True)
class Item:
    """One multiple-choice question about one video.

    options: the options' texts without their labels; option i is letter LETTERS[i].
    answer: the correct letter. style: the prompt style, None = the run's default.
    kind: the question's type (the manifest's optional "type"), reported separately.
    """

    id: str
    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    line: int
    style: str | None = None
    kind: str | None = None

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


# "A. text", "(A) text", "A) text", "A: text", "[A] text"
_LABEL = re.compile(r"^\s*[\(\[]?([A-Z])[\.\):\]]\s*(.*)$", re.S)


def _strip_labels(options: list[str]) -> list[str]:
    """Drop "A. " style labels when every option carries its own letter, in order."""
    found = [_LABEL.match(o) for o in options]
    if all(m is not None and m.group(1) == LETTERS[i] and m.group(2).strip() for i, m in enumerate(found)):
        return [m.group(2).strip() for m in found]
    return [o.strip() for o in options]


def _options(raw, where: str) -> list[str]:
    if isinstance(raw, dict):
        keys = [str(k).strip().upper() for k in raw]
        if keys != list(LETTERS[: len(keys)]):
            raise ManifestError(f"{where}: 'options' as an object needs the keys A, B, C, ... in order, got {list(raw)}")
        raw = list(raw.values())
    if not isinstance(raw, list) or not 2 <= len(raw) <= len(LETTERS):
        got = f"{len(raw)} options" if isinstance(raw, list) else type(raw).__name__
        raise ManifestError(f"{where}: 'options' must be a list of 2 to 26 strings, got {got}")
    if not all(isinstance(o, str) and o.strip() for o in raw):
        raise ManifestError(f"{where}: every option must be a non-empty string")
    return _strip_labels(raw)


def _answer(raw, options: list[str], where: str) -> str:
    """The correct letter from a letter ("B", "(b)", "B."), a 0-based index or an option's text."""
    letters = LETTERS[: len(options)]
    if isinstance(raw, bool):
        pass
    elif isinstance(raw, int):
        if 0 <= raw < len(options):
            return letters[raw]
        raise ManifestError(f"{where}: 'answer' index {raw} is out of range for {len(options)} options")
    elif isinstance(raw, str) and raw.strip():
        text = raw.strip()
        m = re.fullmatch(r"[\(\[]?([A-Za-z])[\)\]\.:]?", text)
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
        matches = [i for i, o in enumerate(options) if norm(o) == norm(text)]
        if len(matches) == 1:
            return letters[matches[0]]
        if m:
            raise ManifestError(f"{where}: 'answer' {raw!r} is not one of the letters {', '.join(letters)}")
        raise ManifestError(f"{where}: 'answer' {raw!r} is neither a letter ({letters[0]}-{letters[-1]}) nor the text of one option")
    raise ManifestError(f"{where}: 'answer' must be a letter, a 0-based option index or an option's text, got {raw!r}")


def load_manifest(path: str | os.PathLike) -> list[Item]:
    """Questions of a JSON-lines manifest, validated; raises ManifestError naming each bad line.

    Each non-blank line is an object with
        video     path of the clip (relative paths resolve against the manifest's folder)
                  (alias: video_path);
        question  the question text;
        options   2-26 option texts, as a list (labels such as "A. ", "(A) " are dropped when
                  every option has its own, in order) or an object {"A": ..., "B": ...}
                  (alias: candidates, MVBench's name);
        answer    the correct letter ("B", "b", "(B)"), a 0-based index, or an option's text;
        id        optional, unique (default: "line-N");
        prompt    optional prompt style for this item (see PROMPT_STYLES).
    Missing video files are NOT an error here: they become error records when the run
    reaches them, so one bad clip cannot stop a long run.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest {path}: {e}") from None
    base = path.resolve().parent
    items: list[Item] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            items.append(_item(line, number, where, base))
        except ManifestError as e:
            errors.append(str(e))
            continue
        first = seen.setdefault(items[-1].id, number)
        if first != number:
            errors.append(f"{where}: id {items[-1].id!r} was already used on line {first}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ManifestError(f"invalid manifest {path} ({len(errors)} bad line(s)):\n  " + "\n  ".join(shown))
    if not items:
        raise ManifestError(f"manifest {path} has no questions")
    return items


def _item(line: str, number: int, where: str, base: Path) -> Item:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: each line must be a JSON object, got {type(row).__name__}")
    video = row.get("video", row.get("video_path"))
    if not isinstance(video, str) or not video.strip():
        raise ManifestError(f"{where}: 'video' must be a non-empty path string")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ManifestError(f"{where}: 'question' must be a non-empty string")
    if "options" not in row and "candidates" not in row:
        raise ManifestError(f"{where}: 'options' is missing")
    options = _options(row.get("options", row.get("candidates")), where)
    if "answer" not in row:
        raise ManifestError(f"{where}: 'answer' is missing")
    answer = _answer(row["answer"], options, where)
    raw_id = row.get("id", f"line-{number}")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise ManifestError(f"{where}: 'id' must be a non-empty string or an integer, got {raw_id!r}")
    style = row.get("prompt")
    if style is not None and style not in PROMPT_STYLES:
        raise ManifestError(f"{where}: 'prompt' must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    kind = row.get("type")
    if kind is not None and (not isinstance(kind, str) or not kind.strip()):
        raise ManifestError(f"{where}: 'type' must be a non-empty string, got {kind!r}")
    video_path = Path(video).expanduser()
    if not video_path.is_absolute():
        video_path = base / video_path
    return Item(str(raw_id), video_path, question.strip(), tuple(options), answer, number, style,
                kind.strip() if kind else None)
