"""The summary of a run: one row per method x retention (accuracy with its 95% Wilson interval,
its share of the baseline's on the same items, tokens, FLOPs, time), as Markdown and CSV."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable

from ..methods import list_methods
from .cells import BASELINE, pct, rkey

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
        cells.setdefault((r["method"], rkey(r["retention"])), []).append(r)
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
            f"| {r['method']} | {pct(r['retention'])} | {r['items']} | {r['errors']} | {r['unparsed']} "
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
