"""`python -m stc.eval.paired OUT [OUT ...]`: one method against every other, question by question.

Two methods asked the same questions are compared more sharply by their paired difference than
by two accuracies' intervals: the per-question difference (1, 0 or -1) averaged over the
questions both answered, with a 95% percentile-bootstrap interval over questions. An interval
that excludes 0 says the two differ on these questions; two Wilson intervals that overlap do not
say they are level.

    python -m stc.eval.paired runs/toy-eval-a runs/toy-eval-b --method stc
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


def paired_table(records: list[dict], method: str = "stc") -> str:
    """Markdown: ``method`` minus every other method of the records (rows) at each retention
    (columns), "+6.6 (+2.4 to +10.8)"; "-" where the two share no item."""
    cells = _cells(records)
    retentions = sorted({r for m, r in cells if m == method}, reverse=True)
    order = {m: i for i, m in enumerate(list_methods())}
    others = sorted({m for m, _ in cells if m not in (method, BASELINE)}, key=lambda m: (order.get(m, len(order)), m))
    lines = [f"| {method} minus | " + " | ".join(pct(r) for r in retentions) + " |",
             "|---|" + "---|" * len(retentions)]
    for other in others:
        row = []
        for retention in retentions:
            p = _difference(_cell(cells, method, retention), _cell(cells, other, retention), 10_000, 0)
            row.append("-" if p is None else f"{p['difference']:+.1f} ({p['low']:+.1f} to {p['high']:+.1f})")
        lines.append(f"| {other} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stc.eval.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="+", type=Path, help="stc.eval output folders (their records.jsonl are merged)")
    parser.add_argument("--method", default="stc", help="the method compared with every other (default: stc)")
    args = parser.parse_args(argv)
    records: dict = {}
    for folder in args.out:
        path = folder / "records.jsonl"
        if not path.is_file():
            parser.error(f"{path} does not exist (an stc.eval --out folder holds one)")
        records.update(RecordLog(path).records)
    records = list(records.values())
    if not any(r["method"] == args.method for r in records):
        parser.error(f"no record of method {args.method!r} in {', '.join(map(str, args.out))}")
    print(paired_table(records, args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
