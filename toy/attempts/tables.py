"""Every table of docs/toy-accuracy.md and of README's toy section, from the run folders that
`bash toy/attempts/rerun_tables.sh` writes (committed weights in RUNS, previous ones in OLD).

    python toy/attempts/tables.py                 # rebuild docs/toy-accuracy.md; check README
    python toy/attempts/tables.py --check         # write nothing; exit 1 where a table differs
    python toy/attempts/tables.py --analysis      # also print the numbers behind the per-type causes

The page's prose lives in toy/attempts/toy-accuracy.template.md; each ``@@NAME@@`` there is one
generated block (`blocks`). README's tables are not rewritten: every table row of its section
"A toy model for offline accuracy" must be a row of some block, else --check fails. Run from the
repository root with the project installed (`make install`).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

from stc.eval.cells import pct
from stc.eval.paired import agreement_table, paired_difference, paired_table, read_runs
from stc.eval.summary import markdown_table, summarize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = HERE / "toy-accuracy.template.md"
PAGE = ROOT / "docs" / "toy-accuracy.md"
README_SECTION = "### A toy model for offline accuracy"
TYPES = ["colour", "flash", "motion", "count", "order"]
ORDER = ["stc", "stc-st", "stc-stage1", "fastv", "visionzip", "fastvid", "flashvid", "holitom", "evs", "vidcom2",
         "uniform", "random"]
RETENTIONS = (0.1, 0.05, 0.02, 0.01)
# the second seed's stc.eval folders: none, stc and HoliTom (fourteenth session); every other
# method (fifteenth: c for seeds 1,000,000-1,000,359, e the same methods for the rest; d)
SEED1_RUNS = ("seed1-eval-a", "seed1-eval-b", "seed1-eval-c", "seed1-eval-d", "seed1-eval-e")
LOG_NOISE = re.compile(r"^\d+/\d+ clips|Loading|torchvision")


def compact(rows: list[dict]) -> str:
    """One line per method: overall with intervals at every retention, then per type, unparsed."""
    by = collections.defaultdict(dict)
    for row in rows:
        by[row["method"]][row["retention"]] = row
    head = ["method", "overall 10% / 5% / 2% / 1% (95% CI)"] + [f"{t} 10 / 5 / 2 / 1" for t in TYPES]
    out = ["| " + " | ".join(head + ["unparsed at 10 / 5 / 2 / 1% |"]), "|" + "---|" * (len(head) + 1)]
    b = by["none"][1.0]
    cells = [f"{b['by_type'][t]:.1f} ({b['by_type_ci'][t][0]:.0f}-{b['by_type_ci'][t][1]:.0f})" for t in TYPES]
    out.append(f"| baseline (3136 tokens) | {b['accuracy']:.1f} ({b['accuracy_ci'][0]:.0f}-{b['accuracy_ci'][1]:.0f}) | "
               + " | ".join(cells) + f" | {b['unparsed']} |")
    for method in (m for m in ORDER if m in by):
        rs = [by[method][k] for k in sorted(by[method], reverse=True)]
        name = f"**{method}**" if method == "stc" else method
        overall = " / ".join(f"{r['accuracy']:.1f} ({r['accuracy_ci'][0]:.0f}-{r['accuracy_ci'][1]:.0f})" for r in rs)
        types = " | ".join(" / ".join(f"{r['by_type'][t]:.0f}" for r in rs) for t in TYPES)
        out.append(f"| {name} | {overall} | {types} | " + " / ".join(str(r["unparsed"]) for r in rs) + " |")
    return "\n".join(out)


def log_tables(path: Path) -> str:
    """The markdown table rows a benchmark printed to its log."""
    return "\n".join(line.rstrip("\n") for line in path.open() if line.startswith("|") and not LOG_NOISE.match(line))


def evidence(path: Path) -> str:
    """benchmarks/toy_evidence.py's report from its first '## ' heading on, one heading level down."""
    lines = [line.rstrip("\n") for line in path.open() if not LOG_NOISE.match(line)]
    first = next(k for k, line in enumerate(lines) if line.startswith("## "))
    return "\n".join("#" + line if line.startswith("## ") else line for line in lines[first:]).strip()


def manifest(path: Path) -> dict[str, dict]:
    return {item["id"]: item for item in map(json.loads, path.open())}


def motion_table(runs: Path, questions: dict[str, dict]) -> str:
    """stc, HoliTom and uniform at 10% on the motion questions, kept tokens at their original
    positions or renumbered contiguously: correct, the direction given most, unparsed."""
    cells = {}
    for positions in ("original", "contiguous"):
        records = read_runs(runs / f"motion-{positions}")
        for method in ("stc", "holitom", "uniform"):
            mine = [r for r in records if r["method"] == method]
            given = collections.Counter(questions[r["item"]]["options"][ord(r["parsed"]) - 65] for r in mine if r["parsed"])
            top, times = given.most_common(1)[0]
            unparsed = sum(r["parsed"] is None for r in mine)
            cells.setdefault(method, {})[positions] = (f"{sum(bool(r['correct']) for r in mine)} (most given: {top}, "
                                                       f"{times} times; {unparsed} unparsed)")
    out = ["| method at 10% | correct of 100, positions original | correct of 100, positions contiguous |", "|---|---|---|"]
    out += [f"| {m} | {cells[m]['original']} | {cells[m]['contiguous']} |" for m in ("stc", "holitom", "uniform")]
    return "\n".join(out)


def blocks(runs: Path, old: Path, questions: dict[str, dict], seed1: Path) -> dict[str, str]:
    """Every generated block of the page, by its template name. ``seed1``: the folder holding
    `SEED1_RUNS` (the recipe's second seed asked the same questions by every method)."""
    out = {}
    for kind, (a, b) in (("FREE", ("toy-eval-a", "toy-eval-b")), ("CONS", ("toy-cons-a", "toy-cons-b"))):
        new, previous = read_runs(runs / a, runs / b), read_runs(old / a, old / b)
        if kind == "FREE":  # the second seed's answers, read against these free ones
            second = read_runs(*(seed1 / name for name in SEED1_RUNS))
            out["SEED1_COMPACT"] = compact(summarize(second))
            out["SEED1_AGREE"] = agreement_table([second, new, previous], "stc")
        out[f"{kind}_COMPACT"] = compact(summarize(new))
        out[f"{kind}_FULL"] = markdown_table(summarize(new))
        out[f"{kind}_PAIRED"] = paired_table(new, "stc")
        out[f"{kind}_AGREE"] = agreement_table([new, previous], "stc")
        out[f"OLD_{kind}"] = compact(summarize(previous))
    out["EVIDENCE"] = evidence(runs / "lane1.evidence.log")
    out["MOTION"] = motion_table(runs, questions)
    for name, log in (("OS12", "os1-2"), ("OS11", "os1-1"), ("OS2", "os2"), ("OS210", "os2-10"), ("OS3", "os3")):
        out[name] = log_tables(runs / f"{log}.log")
    return out


def page(generated: dict[str, str], template: str) -> str:
    text = template
    for name, block in generated.items():
        text = text.replace(f"@@{name}@@", block)
    left = re.findall(r"@@\w+@@", text)
    if left:
        raise SystemExit(f"the template names blocks that are not generated: {left}")
    return text


def readme_rows_missing(generated: dict[str, str], readme: str) -> list[str]:
    """Table rows of README's toy section that no generated block holds."""
    start = readme.index(README_SECTION)
    end = readme.find("\n## ", start)
    rows = {line for block in generated.values() for line in block.splitlines()}
    section = readme[start:end if end > 0 else None].splitlines()
    return [line for line in section if line.startswith("| ") and line not in rows]


def analysis(runs: Path, questions: dict[str, dict]) -> None:
    """The numbers behind README's per-type lines: stc minus each peer per type, unparsed answers
    by type, and the motion answers by direction."""
    new = read_runs(runs / "toy-eval-a", runs / "toy-eval-b")
    for other in ("holitom", "stc-st", "fastv", "vidcom2", "fastvid", "visionzip"):
        for t in TYPES:
            mine = [r for r in new if r.get("type") == t]
            cells = []
            for retention in RETENTIONS:
                p = paired_difference(mine, "stc", other, retention)
                cells.append("-" if p is None else f"{p['difference']:+.0f} ({p['low']:+.0f} to {p['high']:+.0f})")
            print(f"{t:7s} stc-{other}: " + " | ".join(cells))
    rows = summarize(new)
    for method in ("stc", "holitom"):
        for retention in RETENTIONS:
            row = next(r for r in rows if r["method"] == method and abs(r["retention"] - retention) < 1e-9)
            print(f"unparsed {method} {pct(retention)}: {row['by_type_unparsed']}")
    for method, retention in (("none", 1.0), ("stc", 0.1), ("holitom", 0.1), ("fastv", 0.1)):
        tally = collections.defaultdict(lambda: [0, 0, collections.Counter()])
        for r in new:
            if r["method"] == method and abs(r["retention"] - retention) < 1e-9 and r.get("type") == "motion":
                q = questions[r["item"]]
                truth = q["options"][ord(q["answer"]) - 65]
                tally[truth][0] += bool(r["correct"])
                tally[truth][1] += 1
                tally[truth][2][q["options"][ord(r["parsed"]) - 65] if r["parsed"] else None] += 1
        print(f"motion by direction {method} {pct(retention)}: " + "; ".join(
            f"{d} {v[0]}/{v[1]} {dict(v[2].most_common(2))}" for d, v in sorted(tally.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the committed weights' run folders")
    parser.add_argument("--old", type=Path, default=Path("runs/old"), help="the previous weights' run folders")
    parser.add_argument("--seed1", type=Path, default=Path("runs"),
                        help="the folder holding the second seed's runs (SEED1_RUNS)")
    parser.add_argument("--manifest", type=Path, default=Path("runs/toy-test/manifest.jsonl"))
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 where a table differs")
    parser.add_argument("--analysis", action="store_true", help="print the numbers behind the per-type causes")
    args = parser.parse_args(argv)
    questions = manifest(args.manifest)
    generated = blocks(args.runs, args.old, questions, args.seed1)
    text = page(generated, TEMPLATE.read_text())
    status = 0
    if args.check:
        if PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} differs from what the runs give", file=sys.stderr)
            status = 1
    else:
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    missing = readme_rows_missing(generated, (ROOT / "README.md").read_text())
    for row in missing:
        print(f"README row not in any table the runs give: {row[:120]}", file=sys.stderr)
    if args.analysis:
        analysis(args.runs, questions)
    return 1 if missing else status


if __name__ == "__main__":
    sys.exit(main())
