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

One module per job: `manifest` (the questions), `prompts` (lmms-eval's formats), `parsing` (the
letter an answer picks), `cells` (the grid: methods x retentions), `records` (the durable log), `runner`
(the run), `summary` (the tables), `paired` (one method against another, question by question), `cli` (the command line; `__main__` runs it).
"""

from .cli import DEFAULT_MODEL, main
from .cells import BASELINE, DEFAULT_RETENTIONS, Cell, grid
from .manifest import Item, ManifestError, load_manifest
from .parsing import parse_answer
from .prompts import PROMPT_STYLES, build_prompt
from .records import EvalError, RecordLog, RunSettings, record_key
from .runner import run_eval
from .summary import SUMMARY_COLUMNS, csv_table, markdown_table, summarize, wilson, write_summary
from .text import LETTERS

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
