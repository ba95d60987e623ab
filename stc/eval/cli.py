"""`python -m stc.eval`: multiple-choice video QA accuracy for a grid of methods x retentions.

The command line (`main`): the manifest, the grid, the model; the run resumes from OUT and the
summary is printed and written to OUT/summary.csv and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..methods import list_methods
from .cells import BASELINE, DEFAULT_RETENTIONS, grid, rkey
from .manifest import ManifestError, load_manifest
from .prompts import PROMPT_STYLES
from .records import EvalError
from .runner import run_eval
from .summary import markdown_table, summarize, write_summary

DEFAULT_MODEL = "llava-hf/llava-onevision-qwen2-7b-ov-hf"


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
    parser.add_argument("--positions", choices=["original", "contiguous"], default=None,
                        help="force one position-id rule on every method (default: each method's own, "
                             "stc.get_method(m).positions); recorded in OUT/run.json")
    parser.add_argument("--constrained", action="store_true",
                        help="constrain every answer to one of the options (its letter or its text), so none is "
                             "unparsed; recorded in OUT/run.json")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    methods = _split(args.methods)
    try:
        cells = grid(methods, args.retention, args.positions)
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

    from ..models import load

    llm = load(args.model, device=args.device, dtype=args.dtype)
    print(f"stc.eval: {llm.model_id}, {len(items)} question(s) x {len(cells)} cell(s) "
          f"({', '.join(c.label for c in cells)}), {args.frames} frames -> {args.out}", file=sys.stderr)
    try:
        log = run_eval(llm, items, cells, args.out, frames=args.frames, max_new_tokens=args.max_new_tokens,
                       prompt=args.prompt, retry_errors=args.retry_errors, progress=not args.no_progress,
                       constrained=args.constrained)
    except EvalError as e:
        print(f"stc.eval: {e}", file=sys.stderr)
        return 2
    wanted = {(i.id, c.method, rkey(c.retention)) for i in items for c in cells}
    records = [r for k, r in log.records.items() if k in wanted]
    rows = summarize(records)
    forced = f", positions {args.positions} for every method" if args.positions else ""
    forced += ", answers constrained to the options" if args.constrained else ""
    title = f"# stc.eval: {llm.model_id}, {args.frames} frames, {len(items)} question(s), prompt {args.prompt}{forced}"
    csv_path, md_path = write_summary(rows, args.out, title)
    print(title)
    print(markdown_table(rows))
    errors = [r for r in records if r.get("error") is not None]
    if errors:
        print(f"\n{len(errors)} answer(s) failed and are not in the accuracy, e.g. {errors[0]['item']}: {errors[0]['error']}")
    print(f"\nrecords: {log.path}\nsummary: {csv_path}, {md_path}", file=sys.stderr)
    return 0
