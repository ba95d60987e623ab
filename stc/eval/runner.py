"""The run: every (item, cell) not yet recorded, item-major, each answer durable before the next."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from ..video import load_video
from .cells import BASELINE, Cell, rkey
from .manifest import Item
from .parsing import parse_answer
from .text import LETTERS
from .prompts import build_prompt, check_style
from .records import EvalError, RecordLog, RunSettings


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
    constrained: bool = False,
) -> RecordLog:
    """Answer every (item, cell) not yet in OUT/records.jsonl; returns the log with all records.

    Item-major: each video is decoded once and encoded once (the model caches its features)
    for all its cells. A video that cannot be read gives an error record for each of its cells;
    an exception from the model gives an error record for that cell. Error records are excluded
    from accuracy and reported; ``retry_errors`` runs their cells again. ``on_record`` is called
    after each record is durable. ``constrained``: every answer is one of the item's options,
    as its letter or its text (`VideoLLM.answer(choices=...)`), so none is unparsed; the
    accuracy then says which option the model prefers from each method's tokens, whatever its
    free text would have been.
    """
    check_style(prompt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    forced = {c.positions for c in cells if c.method != BASELINE} - {None}
    if len(forced) > 1:
        raise EvalError(f"one run forces at most one position rule, got {sorted(forced)}")
    RunSettings(llm.model_id, frames, max_new_tokens, prompt, next(iter(forced), None), constrained).check_or_write(out)
    log = RecordLog(out / "records.jsonl")

    def pending(item: Item, cell: Cell) -> bool:
        record = log.records.get((item.id, cell.method, rkey(cell.retention)))
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
                    record.update(_answer_one(llm, video, question, item, cell, frames, max_new_tokens, constrained))
                log.append(record)
                bar.update(f"{item.id} {cell.label}")
                if on_record is not None:
                    on_record(record)
    finally:
        bar.close()
    return log


def _answer_one(llm, video, question: str, item: Item, cell: Cell, frames: int, max_new_tokens: int,
                constrained: bool = False) -> dict:
    t0 = time.perf_counter()
    choices = [*LETTERS[: len(item.options)], *item.options] if constrained else None
    try:
        answer = llm.answer(video, question, config=cell.config(), max_new_tokens=max_new_tokens, num_frames=frames,
                            choices=choices)
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
