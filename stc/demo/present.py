"""What the page shows of a `Comparison`: one cost table (a row per run), the answers, and the
Markdown that says what ran. Display strings only; the drawing is `stc.viz`.
"""

from __future__ import annotations

import numpy as np

from ..results import Answer
from .runner import Comparison, budget_text, run_label

COST_HEADERS = [
    "run", "visual tokens in LLM → after K", "FLOPs", "% of baseline FLOPs", "compression s", "prefill s",
    "prefill vs baseline", "TTFT s", "decode tok/s", "new tokens", "peak mem GiB",
]
ANSWER_HEADERS = ["run", "answer"]


def _share(b: float, c: float) -> str:
    """c as a share of b, "12.3%" ("—" when b is not positive)."""
    return f"{c / b:.1%}" if b > 0 else "—"


def _speedup(b: float, c: float) -> str:
    if not (b > 0 and c > 0):
        return "—"
    return f"{b / c:.1f}× faster" if b >= c else f"{c / b:.1f}× slower"


def flops_text(value: float) -> str:
    """FLOPs in the paper's unit (T) when large, in G below 0.1 T."""
    return f"{value / 1e12:.3g} T" if value >= 1e11 else f"{value / 1e9:.3g} G"


def shown_text(answer: Answer) -> str:
    """What the UI shows for an answer: an empty reply (the model ended at once) says so."""
    return answer.text or "(empty answer: the model ended its reply at once)"


def cost_rows(result: Comparison) -> list[list[str]]:
    """One row of costs per run (`COST_HEADERS`), the baseline first. ``result``: a `Comparison`,
    or anything with its ``baseline``, ``answers`` and ``labels`` (`stc.demo.SameCost`)."""
    b = result.baseline.stats
    rows = []
    for label, answer in zip(result.labels, result.answers):
        c = answer.stats
        tokens = f"{c.visual_tokens_stage1:,}"
        if c.visual_tokens_stage2 != c.visual_tokens_stage1:
            tokens += f" → {c.visual_tokens_stage2:,} (K = {c.inner_layer})"
        rows.append([
            label, tokens, flops_text(c.flops), _share(b.flops, c.flops), f"{c.compress_seconds:.3f}",
            f"{c.prefill_seconds:.3f}", "—" if answer is result.baseline else _speedup(b.prefill_seconds, c.prefill_seconds),
            f"{c.ttft_seconds:.3f}", f"{c.decode_tokens_per_second:.1f}", f"{c.new_tokens}",
            f"{c.peak_memory_bytes / 2**30:.2f}",
        ])
    return rows


def answer_rows(result: Comparison) -> list[list[str]]:
    """[run, answer] for the baseline and every run."""
    return [[label, shown_text(a)] for label, a in zip(result.labels, result.answers)]


def answer_title(answer: Answer, num_frames: int) -> str:
    """'stc 2%: 31 of 1,568 visual tokens enter the LLM, 16 remain after layer 16 · 8 frames'."""
    c = answer.stats
    text = f"{run_label(answer.config)}: {c.visual_tokens_stage1:,} of {c.visual_tokens:,} visual tokens enter the LLM"
    if c.visual_tokens_stage2 != c.visual_tokens_stage1:
        text += f", {c.visual_tokens_stage2:,} remain after layer {c.inner_layer}"
    return text + f" · {num_frames} frames"


def grid_titles(result: Comparison) -> list[str]:
    """The title of each run's retention grid."""
    return [answer_title(a, len(result.frames)) for a in result.runs]


def _request_line(result: Comparison) -> str:
    question = result.question if len(result.question) <= 160 else result.question[:159] + "…"
    video = f"`{result.video_name}`, " if result.video_name else ""
    return f"{video}{len(result.frames)} frames sampled · “{question}”"


def _run_line(answer: Answer) -> str:
    c, p = answer.stats, answer.provenance
    zero = int((np.asarray(p.tokens_per_frame) == 0).sum())
    unit = "frames" if p.frames_per_slot == 1 else f"temporal patches of {p.frames_per_slot} frames"
    after = f", {c.visual_tokens_stage2:,} after layer K = {c.inner_layer}" if c.visual_tokens_stage2 != c.visual_tokens_stage1 else ""
    return (f"**{run_label(answer.config)}**: {c.visual_tokens_stage1:,} / {c.visual_tokens:,} visual tokens into the "
            f"LLM ({c.visual_tokens_stage1 / max(c.visual_tokens, 1):.1%}){after}; {zero} of "
            f"{len(p.tokens_per_frame)} {unit} send no token.")


def details(result: Comparison) -> str:
    """Markdown under the results: what ran, on what, how long, and any note about the video."""
    b = result.baseline.stats
    runs = len(result.runs)
    budgets = sorted({budget_text(a.config) for a in result.runs})
    shared = ", ".join(budgets) + (" retention" if all(t.endswith("%") for t in budgets) else "")
    what = f"**{run_label(result.runs[0].config)}**" if runs == 1 else f"**{runs} methods at {shared}**"
    memory = "CUDA max allocated" if b.peak_memory_kind == "cuda_max_allocated" else "process RSS"
    lines = [
        f"{what} and the baseline on `{result.model_id}` ({result.device}). One model instance; the video was "
        f"decoded once and encoded once ({b.vision_seconds:.2f} s, shared by every run; time to first token (TTFT) "
        f"counts it for each). Peak memory is {memory}. Total {result.seconds:.1f} s.",
        *(_run_line(a) for a in result.runs),
        _request_line(result),
    ]
    if runs > 1:
        lines.append("Retention grids, top to bottom: " + ", ".join(result.labels[1:]) + ".")
    lines.extend(f"Note: {note}." for note in result.notes)
    return "\n\n".join(lines)
