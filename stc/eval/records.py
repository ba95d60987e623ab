"""OUT/records.jsonl (one durable JSON line per answer) and OUT/run.json (the settings a
resumed run must share)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .cells import rkey


class EvalError(ValueError):
    """An output folder that cannot be resumed with these settings."""


def record_key(record: dict) -> tuple[str, str, float]:
    return (str(record["item"]), str(record["method"]), rkey(record["retention"]))


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
    positions: str | None = None  # a forced position-id rule (absent from run.json when None)
    constrained: bool = False  # answers constrained to the options (absent from run.json when False)

    def check_or_write(self, out: Path) -> None:
        path = out / "run.json"
        mine = {"model": self.model, "frames": self.frames, "max_new_tokens": self.max_new_tokens, "prompt": self.prompt}
        if self.positions is not None:
            mine["positions"] = self.positions
        if self.constrained:
            mine["constrained"] = True
        if path.exists():
            try:
                theirs = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                theirs = {}
            diff = {k: (theirs.get(k), mine.get(k)) for k in sorted({*mine, *theirs}) if theirs.get(k) != mine.get(k)}
            if diff:
                what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
                raise EvalError(f"{out} holds a run with other settings ({what}); use another --out or the same settings")
        path.write_text(json.dumps(mine, indent=2) + "\n")
