"""`python -m stc.eval.paired OUT [OUT ...]`: one method against every other, question by question.

Two methods asked the same questions are compared more sharply by their paired difference than
by two accuracies' intervals: the per-question difference (1, 0 or -1) averaged over the
questions both answered, with a 95% percentile-bootstrap interval over questions. An interval
that excludes 0 says the two differ on these questions; two Wilson intervals that overlap do not
say they are level.

    python -m stc.eval.paired runs/toy-eval-a runs/toy-eval-b --method stc

A difference measured on one checkpoint (one trained model, one seed) may not hold on another of
the same recipe. ``--also OUT [OUT ...]`` (repeatable) adds the records of another checkpoint,
asked the same questions: each cell then gives the difference on every checkpoint, "a / b", in
bold where every checkpoint's interval excludes 0 on the same side (a difference that holds on
all of them), with "=" where each interval holds 0 (level on all of them).

    python -m stc.eval.paired runs/toy-eval-a runs/toy-eval-b --also runs/old/toy-eval-a runs/old/toy-eval-b
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

from ..methods import list_methods
from .cells import BASELINE, pct, rkey
from .records import RecordLog


def _cells(records: Iterable[dict]) -> dict[tuple[str, float], dict[str, bool]]:
    """{(method, retention): {item: correct}} of the records answered without error, read once."""
    cells: dict[tuple[str, float], dict[str, bool]] = {}
    for r in records:
        if r.get("error") is None:
            cells.setdefault((r["method"], rkey(r["retention"])), {})[r["item"]] = bool(r["correct"])
    return cells


def _difference(a: dict[str, bool], b: dict[str, bool], resamples: int, seed: int) -> dict | None:
    items = sorted(set(a) & set(b))
    if not items:
        return None
    d = np.array([a[i] for i in items], dtype=np.float64) - np.array([b[i] for i in items], dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": 100 * float(d.mean()), "low": 100 * float(low), "high": 100 * float(high),
            "items": len(items)}


def _cell(cells: dict, method: str, retention: float) -> dict[str, bool]:
    return cells.get((method, 1.0 if method == BASELINE else rkey(retention)), {})


def paired_difference(records: Iterable[dict], method: str, other: str, retention: float, *,
                      resamples: int = 10_000, seed: int = 0) -> dict | None:
    """Accuracy of ``method`` minus ``other`` at ``retention`` (the baseline at any retention) on
    the items both answered without error, in points: {"difference", "low", "high", "items"};
    None when no item is shared. The interval: percentiles 2.5 and 97.5 of ``resamples``
    bootstrap means over those items (a fixed ``seed``: the same records give the same interval)."""
    cells = _cells(records)
    return _difference(_cell(cells, method, retention), _cell(cells, other, retention), resamples, seed)


def _table(runs: list[list[dict]], method: str, cell) -> str:
    """Markdown: ``method`` minus every other method of the first run (rows) at each of its
    retentions (columns); ``cell(differences)`` writes one cell from the paired difference on
    every run (all of them not None); "-" where a run shares no item."""
    cells = [_cells(records) for records in runs]
    retentions = sorted({r for m, r in cells[0] if m == method}, reverse=True)
    lines = [f"| {method} minus | " + " | ".join(pct(r) for r in retentions) + " |",
             "|---|" + "---|" * len(retentions)]
    for other in _others(cells[0], method):
        row = []
        for retention in retentions:
            ps = [_difference(_cell(c, method, retention), _cell(c, other, retention), 10_000, 0) for c in cells]
            row.append("-" if any(p is None for p in ps) else cell(ps))
        lines.append(f"| {other} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def paired_table(records: list[dict], method: str = "stc") -> str:
    """Markdown: ``method`` minus every other method of the records (rows) at each retention
    (columns), "+6.6 (+2.4 to +10.8)"; "-" where the two share no item."""
    return _table([records], method, lambda ps: f"{ps[0]['difference']:+.1f} ({ps[0]['low']:+.1f} to {ps[0]['high']:+.1f})")


def _others(cells: dict, method: str) -> list[str]:
    order = {m: i for i, m in enumerate(list_methods())}
    return sorted({m for m, _ in cells if m not in (method, BASELINE)}, key=lambda m: (order.get(m, len(order)), m))


def _agreement(ps: list[dict]) -> str:
    text = " / ".join(f"{p['difference']:+.1f}" for p in ps)
    if all(p["low"] > 0 for p in ps) or all(p["high"] < 0 for p in ps):
        return f"**{text}**"
    return text + " =" if all(p["low"] <= 0 <= p["high"] for p in ps) else text


def agreement_table(runs: list[list[dict]], method: str = "stc") -> str:
    """Markdown: ``method`` minus every other method on each of ``runs`` (one list of records per
    checkpoint, asked the same questions), rows x retentions, "+7.8 / +8.8" per cell: bold where
    every run's 95% interval excludes 0 on the same side (holds on all), suffixed " =" where every
    run's interval holds 0 (level on all), plain where the runs disagree; "-" where a run shares
    no item. Rows and retentions are those of the first run."""
    return _table(runs, method, _agreement)


def read_runs(*folders: str | Path) -> list[dict]:
    """The records of stc.eval ``--out`` folders merged: one per (item, method, retention), a
    later folder's record replacing an earlier one's. FileNotFoundError where a folder has no
    records.jsonl."""
    records: dict = {}
    for folder in map(Path, folders):
        path = folder / "records.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (an stc.eval --out folder holds one)")
        records.update(RecordLog(path).records)
    return list(records.values())


def _read(parser, folders: list[Path]) -> list[dict]:
    try:
        return read_runs(*folders)
    except FileNotFoundError as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stc.eval.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="+", type=Path, help="stc.eval output folders (their records.jsonl are merged)")
    parser.add_argument("--method", default="stc", help="the method compared with every other (default: stc)")
    parser.add_argument("--also", nargs="+", type=Path, action="append", default=[], metavar="OUT",
                        help="another checkpoint's output folders, asked the same questions (repeatable): "
                             "one table of the differences on every checkpoint")
    args = parser.parse_args(argv)
    runs = [_read(parser, args.out)] + [_read(parser, folders) for folders in args.also]
    for records, folders in zip(runs, [args.out] + args.also):
        if not any(r["method"] == args.method for r in records):
            parser.error(f"no record of method {args.method!r} in {', '.join(map(str, folders))}")
    print(paired_table(runs[0], args.method) if len(runs) == 1 else agreement_table(runs, args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
