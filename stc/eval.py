"""`python -m stc.eval`: multiple-choice video QA accuracy for a grid of methods x retentions.

Reads a local manifest (JSON lines, one question each, shaped like MVBench / VideoMME /
EgoSchema), asks one Video-LLM every question uncompressed (method "none", once per item) and
with every other method of the grid at every retention, in the prompt format the paper's toolkit
(lmms-eval) uses for LLaVA-OneVision and Qwen2.5-VL, and parses the option letter out of each
answer. Every answer becomes one JSON line of OUT/records.jsonl, made durable before the next
starts, so a killed run continues where it stopped and never counts an answer twice. The summary
(accuracy, its share of the baseline's on the same items, mean visual tokens, FLOPs and prefill
time per method x retention) is printed and written to OUT/summary.csv and OUT/summary.md.

    python -m stc.eval questions.jsonl --model llava-hf/llava-onevision-qwen2-7b-ov-hf \\
        --methods none stc stc-stage1 --retention 0.1 0.05 0.02 0.01 --out runs/eval

A manifest line (see `load_manifest` for every accepted form):

    {"id": "q1", "video": "clips/a.mp4", "question": "What does the man pick up?",
     "options": ["A cup", "A book", "A phone", "A key"], "answer": "B"}
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .config import STCConfig
from .methods import list_methods
from .video import load_video

__all__ = [
    "Cell",
    "Item",
    "ManifestError",
    "PROMPT_STYLES",
    "RecordLog",
    "build_prompt",
    "grid",
    "load_manifest",
    "main",
    "markdown_table",
    "parse_answer",
    "run_eval",
    "summarize",
    "wilson",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASELINE = "none"
DEFAULT_MODEL = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
DEFAULT_RETENTIONS = (0.10, 0.05, 0.02, 0.01)  # the paper's table


class ManifestError(ValueError):
    """A manifest that cannot be evaluated; the message names every bad line."""


class EvalError(ValueError):
    """An output folder that cannot be resumed with these settings."""


# -- the manifest --------------------------------------------------------------------------------
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
        matches = [i for i, o in enumerate(options) if _norm(o) == _norm(text)]
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


# -- prompts -------------------------------------------------------------------------------------
# The texts lmms-eval 0.7 builds for these benchmarks with its "default" model kwargs, which is
# what its llava_onevision and qwen2_5_vl models (and the "stc" plugin) get; the chat template
# then puts the video first and this text after it. Kept verbatim so local numbers compare with
# the paper's, including lmms-eval's VideoMME wording "and the subtitles" without subtitles.
def _letter_list(n: int) -> str:
    letters = list(LETTERS[:n])
    return " or ".join(letters) if n == 2 else ", ".join(letters[:-1]) + ", or " + letters[-1]


def _videomme(question: str, options: tuple[str, ...]) -> str:
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        f"Respond with only the letter ({_letter_list(len(options))}) of the correct option.\n"
        f"{question}\n{lines}\n\nAnswer with the option's letter from the given choices directly."
    )


def _mvbench(question: str, options: tuple[str, ...]) -> str:
    lines = "".join(f"({LETTERS[i]}) {o}\n" for i, o in enumerate(options))
    return f"Question:{question}\nOption:\n{lines}Only give the best option.\n"


def _egoschema(question: str, options: tuple[str, ...]) -> str:
    lines = "".join(f"\n{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{question}{lines}\nAnswer with the option's letter from the given choices directly."


def _mlvu(question: str, options: tuple[str, ...]) -> str:
    lines = "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return f"{question}\n{lines}\nOnly give the best option.\nBest option: ("


def _longvideobench(question: str, options: tuple[str, ...]) -> str:
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return f"{question}\n{lines}\nAnswer with the option's letter from the given choices directly.\n"


PROMPT_STYLES: dict[str, Callable[[str, tuple[str, ...]], str]] = {
    "videomme": _videomme,
    "mvbench": _mvbench,
    "egoschema": _egoschema,
    "mlvu": _mlvu,
    "longvideobench": _longvideobench,
}


def build_prompt(question: str, options: Iterable[str], style: str = "videomme") -> str:
    """The text after the video for one question, in lmms-eval's format for ``style``."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {style!r}")
    return PROMPT_STYLES[style](question, tuple(options))


# -- answers -------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


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
    said = _norm(s)
    texts = [_norm(o) for o in options]
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


# -- the grid ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One column of the grid: a method at a retention (the baseline: "none" at 1.0)."""

    method: str
    retention: float

    def config(self) -> STCConfig | None:
        return None if self.method == BASELINE else STCConfig(retention=self.retention, method=self.method)

    @property
    def label(self) -> str:
        return BASELINE if self.method == BASELINE else f"{self.method} {_pct(self.retention)}"


def _pct(retention: float) -> str:
    return f"{100 * retention:g}%"


def _rkey(retention: float) -> float:
    return round(float(retention), 6)


def grid(methods: Iterable[str], retentions: Iterable[float]) -> list[Cell]:
    """Cells in run order: the baseline once (if asked for), then each method at each retention."""
    methods = list(dict.fromkeys(methods))
    retentions = list(dict.fromkeys(_rkey(r) for r in retentions))
    known = list_methods()
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown method {m!r}; available: {', '.join(known)}")
    for r in retentions:
        if not 0 < r <= 1:
            raise ValueError(f"retention must be in (0, 1], got {r!r}")
    cells = [Cell(BASELINE, 1.0)] if BASELINE in methods else []
    cells += [Cell(m, r) for m in methods if m != BASELINE for r in retentions]
    if not cells:
        raise ValueError("the grid is empty: give at least one method (and a retention unless it is 'none')")
    return cells


# -- records -------------------------------------------------------------------------------------
def record_key(record: dict) -> tuple[str, str, float]:
    return (str(record["item"]), str(record["method"]), _rkey(record["retention"]))


class RecordLog:
    """OUT/records.jsonl: one JSON line per answer, appended durably (flush + fsync).

    Opening an existing log keeps its complete lines and cuts off a torn last line (a run
    killed mid-write); a later record for the same key replaces an earlier one (only
    ``--retry-errors`` writes one).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[tuple, dict] = {}
        self.skipped_lines = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: drop it so the next append starts clean
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            print(f"stc.eval: dropped a torn last line of {self.path} (an interrupted write)", file=sys.stderr)
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                self.records[record_key(record)] = record
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                self.skipped_lines += 1
        if self.skipped_lines:
            print(f"stc.eval: ignored {self.skipped_lines} unreadable line(s) in {self.path}", file=sys.stderr)

    def __contains__(self, key) -> bool:
        return key in self.records

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records[record_key(record)] = record


@dataclass
class RunSettings:
    """What must not change between a run and its resumption (OUT/run.json)."""

    model: str
    frames: int
    max_new_tokens: int
    prompt: str

    def check_or_write(self, out: Path) -> None:
        path = out / "run.json"
        mine = {"model": self.model, "frames": self.frames, "max_new_tokens": self.max_new_tokens, "prompt": self.prompt}
        if path.exists():
            try:
                theirs = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                theirs = {}
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            if diff:
                what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise EvalError(f"{out} holds a run with other settings ({what}); use another --out or the same settings")
        path.write_text(json.dumps(mine, indent=2) + "\n")


class _Bar:
    """tqdm when installed, else a line per 5% on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self._tqdm = total, 0, enabled, None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm(total=total, desc="stc.eval", unit="answer", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, note: str) -> None:
        self.done += 1
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(note, refresh=False)
            self._tqdm.update(1)
        elif self.enabled and (self.done == self.total or self.done % max(1, self.total // 20) == 0):
            print(f"stc.eval: {self.done}/{self.total} answers ({note})", file=sys.stderr)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def _base_record(item: Item, cell: Cell, style: str) -> dict:
    return {
        "item": item.id,
        "method": cell.method,
        "retention": cell.retention,
        "video": str(item.video),
        "prompt": style,
        "answer": item.answer,
        "type": item.kind,
    }


def run_eval(
    llm,
    items: list[Item],
    cells: list[Cell],
    out: str | os.PathLike,
    *,
    frames: int = 32,
    max_new_tokens: int = 16,
    prompt: str = "videomme",
    retry_errors: bool = False,
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
) -> RecordLog:
    """Answer every (item, cell) not yet in OUT/records.jsonl; returns the log with all records.

    Item-major: each video is decoded once and encoded once (the model caches its features)
    for all its cells. A video that cannot be read gives an error record for each of its cells;
    an exception from the model gives an error record for that cell. Error records are excluded
    from accuracy and reported; ``retry_errors`` runs their cells again. ``on_record`` is called
    after each record is durable.
    """
    if prompt not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {', '.join(PROMPT_STYLES)}, got {prompt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    RunSettings(llm.model_id, frames, max_new_tokens, prompt).check_or_write(out)
    log = RecordLog(out / "records.jsonl")

    def pending(item: Item, cell: Cell) -> bool:
        record = log.records.get((item.id, cell.method, _rkey(cell.retention)))
        return record is None or (retry_errors and record.get("error") is not None)

    todo = [(item, [c for c in cells if pending(item, c)]) for item in items]
    todo = [(item, cs) for item, cs in todo if cs]
    bar = _Bar(sum(len(cs) for _, cs in todo), progress)
    try:
        for item, item_cells in todo:
            style = item.style or prompt
            question = build_prompt(item.question, item.options, style)
            try:
                video = load_video(item.video, num_frames=frames)
                video_error = None
            except (ValueError, OSError) as e:
                video, video_error = None, f"{type(e).__name__}: {e}"
            for cell in item_cells:
                record = _base_record(item, cell, style)
                if video_error is not None:
                    record.update(error=video_error)
                else:
                    record.update(_answer_one(llm, video, question, item, cell, frames, max_new_tokens))
                log.append(record)
                bar.update(f"{item.id} {cell.label}")
                if on_record is not None:
                    on_record(record)
    finally:
        bar.close()
    return log


def _answer_one(llm, video, question: str, item: Item, cell: Cell, frames: int, max_new_tokens: int) -> dict:
    t0 = time.perf_counter()
    try:
        answer = llm.answer(video, question, config=cell.config(), max_new_tokens=max_new_tokens, num_frames=frames)
    except Exception as e:  # one bad cell (a method's bug, out of memory) must not end the run
        print(f"stc.eval: {item.id} {cell.label}: {type(e).__name__}: {e}", file=sys.stderr)
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}
    seconds = time.perf_counter() - t0
    parsed = parse_answer(answer.text, item.options)
    s = answer.stats
    return {
        "raw": answer.text,
        "parsed": parsed,
        "correct": parsed == item.answer,
        "visual_tokens": s.visual_tokens_stage1,
        "visual_tokens_after_k": s.visual_tokens_stage2,
        "visual_tokens_total": s.visual_tokens,
        "flops": s.flops,
        "flops_baseline": s.flops_baseline,
        "compress_seconds": s.compress_seconds,
        "prefill_seconds": s.prefill_seconds,
        "ttft_seconds": s.ttft_seconds,
        "seconds": seconds,
        "error": None,
    }


# -- the summary ---------------------------------------------------------------------------------
SUMMARY_COLUMNS = (
    "method", "retention", "items", "errors", "unparsed", "correct", "accuracy", "pct_of_baseline",
    "visual_tokens", "visual_tokens_after_k", "flops_T", "flops_pct_of_baseline", "prefill_s", "seconds",
)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def wilson(correct: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The 95% Wilson score interval of an accuracy ``correct`` / ``n``, in %; None when n = 0.
    Unlike the normal approximation it stays inside [0, 100] and is honest at 0% and 100%."""
    if n <= 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def summarize(records: Iterable[dict]) -> list[dict]:
    """One row per (method, retention): accuracy over the answered items (error records
    excluded, unparsed answers counted wrong), accuracy as % of the baseline's ON THE SAME
    ITEMS, and means of visual tokens (entering the LLM, and after layer K), FLOPs, prefill
    and wall seconds per answer (the first cell of an item also pays the vision encoder)."""
    cells: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        cells.setdefault((r["method"], _rkey(r["retention"])), []).append(r)
    base = {r["item"]: r for r in cells.get((BASELINE, 1.0), []) if r.get("error") is None}
    order = {m: i for i, m in enumerate(list_methods())}
    rows = []
    for (method, retention), rs in sorted(
        cells.items(), key=lambda kv: (kv[0][0] != BASELINE, order.get(kv[0][0], len(order)), kv[0][0], -kv[0][1])
    ):
        ok = [r for r in rs if r.get("error") is None]
        correct = sum(bool(r["correct"]) for r in ok)
        paired = [r for r in ok if r["item"] in base]
        base_correct = sum(bool(base[r["item"]]["correct"]) for r in paired)
        pct = None
        if paired and base_correct:
            pct = 100 * (sum(bool(r["correct"]) for r in paired) / len(paired)) / (base_correct / len(paired))
        flops = _mean([r["flops"] for r in ok])
        flops_base = _mean([r["flops_baseline"] for r in ok])
        rows.append({
            "method": method,
            "retention": retention,
            "items": len(ok),
            "errors": len(rs) - len(ok),
            "unparsed": sum(r.get("parsed") is None for r in ok),
            "correct": correct,
            "accuracy": 100 * correct / len(ok) if ok else None,
            "accuracy_ci": wilson(correct, len(ok)),
            "pct_of_baseline": pct,
            "visual_tokens": _mean([r["visual_tokens"] for r in ok]),
            "visual_tokens_after_k": _mean([r["visual_tokens_after_k"] for r in ok]),
            "flops_T": flops / 1e12 if flops is not None else None,
            "flops_pct_of_baseline": 100 * flops / flops_base if flops is not None and flops_base else None,
            "prefill_s": _mean([r["prefill_seconds"] for r in ok]),
            "seconds": _mean([r["seconds"] for r in ok]),
            "by_type": {
                kind: 100 * sum(bool(r["correct"]) for r in group) / len(group)
                for kind in sorted({r.get("type") for r in ok if r.get("type")})
                for group in [[r for r in ok if r.get("type") == kind]]
            },
            "by_type_ci": {
                kind: wilson(sum(bool(r["correct"]) for r in group), len(group))
                for kind in sorted({r.get("type") for r in ok if r.get("type")})
                for group in [[r for r in ok if r.get("type") == kind]]
            },
            "by_type_unparsed": {
                kind: sum(r.get("parsed") is None for r in ok if r.get("type") == kind)
                for kind in sorted({r.get("type") for r in ok if r.get("type")})
            },
        })
    return rows


def _types(rows: list[dict]) -> list[str]:
    return sorted({kind for r in rows for kind in r.get("by_type", {})})


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_ci(value, ci) -> str:
    """"62.0 (57.7-66.1)": an accuracy and its 95% interval."""
    return _fmt(value, ".1f") + ("" if ci is None else f" ({ci[0]:.1f}-{ci[1]:.1f})")


def markdown_table(rows: list[dict]) -> str:
    head = (
        "| method | retention | items | errors | unparsed | accuracy (%, 95% CI) | % of baseline | visual tokens (in LLM -> after K) "
        "| FLOPs (T) | FLOPs % of baseline | prefill (s) | s / answer |"
    )
    types = _types(rows)  # accuracy per question type, when the manifest gives types
    head += "".join(f" {kind} (%, 95% CI) |" for kind in types)
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        tokens = _fmt(r["visual_tokens"], ".0f")
        if r["visual_tokens_after_k"] is not None and round(r["visual_tokens_after_k"]) != round(r["visual_tokens"]):
            tokens += f" -> {r['visual_tokens_after_k']:.0f}"
        lines.append(
            f"| {r['method']} | {_pct(r['retention'])} | {r['items']} | {r['errors']} | {r['unparsed']} "
            f"| {_fmt_ci(r['accuracy'], r.get('accuracy_ci'))} | {_fmt(r['pct_of_baseline'], '.1f')} | {tokens} "
            f"| {_fmt(r['flops_T'], '.3g')} | {_fmt(r['flops_pct_of_baseline'], '.1f')} "
            f"| {_fmt(r['prefill_s'], '.4f')} | {_fmt(r['seconds'], '.2f')} |"
            + "".join(f" {_fmt_ci(r.get('by_type', {}).get(kind), r.get('by_type_ci', {}).get(kind))} |" for kind in types)
        )
    return "\n".join(lines)


def csv_table(rows: list[dict]) -> str:
    buf = io.StringIO()
    types = _types(rows)
    per_type = [f"{name}_{kind}" for kind in types for name in ("accuracy", "accuracy_low", "accuracy_high", "unparsed")]
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_COLUMNS) + ["accuracy_low", "accuracy_high"] + per_type,
                            lineterminator="\n")
    writer.writeheader()
    for r in rows:
        row = {k: ("" if r[k] is None else r[k]) for k in SUMMARY_COLUMNS}
        ci = r.get("accuracy_ci")
        row.update(accuracy_low="" if ci is None else ci[0], accuracy_high="" if ci is None else ci[1])
        for kind in types:
            ci = r.get("by_type_ci", {}).get(kind)
            row.update({f"accuracy_{kind}": r.get("by_type", {}).get(kind, ""),
                        f"accuracy_low_{kind}": "" if ci is None else ci[0],
                        f"accuracy_high_{kind}": "" if ci is None else ci[1],
                        f"unparsed_{kind}": r.get("by_type_unparsed", {}).get(kind, "")})
        writer.writerow(row)
    return buf.getvalue()


def write_summary(rows: list[dict], out: Path, title: str = "") -> tuple[Path, Path]:
    md, csv_path = out / "summary.md", out / "summary.csv"
    md.write_text((f"{title}\n\n" if title else "") + markdown_table(rows) + "\n")
    csv_path.write_text(csv_table(rows))
    return csv_path, md


# -- command line --------------------------------------------------------------------------------
def _retention(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"retention must be a fraction (0.02) or a percentage (2%), got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"retention must be in (0, 1], got {text!r}")
    return value


def _split(values: list[str]) -> list[str]:
    return [v for value in values for v in value.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stc.eval",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path, help="JSON-lines questions (video, question, options, answer)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model id or path for stc.load (default: {DEFAULT_MODEL})")
    parser.add_argument("--methods", nargs="+", default=[BASELINE, "stc"],
                        help=f"methods, space- or comma-separated (default: none stc); available: {', '.join(list_methods())}")
    parser.add_argument("--retention", nargs="+", type=_retention, default=list(DEFAULT_RETENTIONS),
                        help="retentions as fractions or percentages (default: 0.1 0.05 0.02 0.01); 'none' runs once")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default: 32)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="(default: 16, as lmms-eval's video MCQ tasks)")
    parser.add_argument("--prompt", choices=list(PROMPT_STYLES), default="videomme",
                        help="prompt style for items without their own 'prompt' (default: videomme)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"), help="output folder; rerun to resume (default: runs/eval)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--retry-errors", action="store_true", help="run again the cells whose record is an error")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    methods = _split(args.methods)
    try:
        cells = grid(methods, args.retention)
    except ValueError as e:
        parser.error(str(e))
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        items = load_manifest(args.manifest)
    except ManifestError as e:
        print(f"stc.eval: {e}", file=sys.stderr)
        return 2
    items = items[: args.limit] if args.limit else items

    from .models import load

    llm = load(args.model, device=args.device, dtype=args.dtype)
    print(f"stc.eval: {llm.model_id}, {len(items)} question(s) x {len(cells)} cell(s) "
          f"({', '.join(c.label for c in cells)}), {args.frames} frames -> {args.out}", file=sys.stderr)
    try:
        log = run_eval(llm, items, cells, args.out, frames=args.frames, max_new_tokens=args.max_new_tokens,
                       prompt=args.prompt, retry_errors=args.retry_errors, progress=not args.no_progress)
    except EvalError as e:
        print(f"stc.eval: {e}", file=sys.stderr)
        return 2
    wanted = {(i.id, c.method, _rkey(c.retention)) for i in items for c in cells}
    records = [r for k, r in log.records.items() if k in wanted]
    rows = summarize(records)
    title = f"# stc.eval: {llm.model_id}, {args.frames} frames, {len(items)} question(s), prompt {args.prompt}"
    csv_path, md_path = write_summary(rows, args.out, title)
    print(title)
    print(markdown_table(rows))
    errors = [r for r in records if r.get("error") is not None]
    if errors:
        print(f"\n{len(errors)} answer(s) failed and are not in the accuracy, e.g. {errors[0]['item']}: {errors[0]['error']}")
    print(f"\nrecords: {log.path}\nsummary: {csv_path}, {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
