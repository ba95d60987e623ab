"""What every tab shares: failures as one line, the one GPU call of a click, the cost table and
the grid's legend, and what a click will ask of ZeroGPU."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from ...messages import one_line
from ...results import OutOfMemory
from ...video import Cancelled
from ..admission import admit
from ..app_state import AppState
from ..gradio_overrides import client_gone
from ..loading import ModelPool, ModelUnavailable, on_zero_gpu
from ..present import COST_HEADERS, cost_rows
from ..requests import KNOBS, check_controls, check_layer, hide_folders, make_config
from ..zerogpu import gpu_seconds, long_gpu_seconds, quota_note

log = logging.getLogger("stc.app")

COST_WIDTHS = ["12%", "15%", "8%", "9%", "9%", "8%", "10%", "8%", "8%", "6%", "7%"]

GRID_LEGEND = (
    "A patch outlined in green is kept as itself; a thin coloured line surrounds the patches merged into "
    "one refilled token (one colour per cluster); white hatching marks tokens merged away at layer K; dimmed "
    "patches were dropped. The count under each frame is the tokens it sends to the LLM — a red frame sends none."
)


@dataclass(frozen=True)
class GpuCalls:
    """The app's two `@spaces.GPU` functions (defined in app.py, at module level, after
    `import spaces`): every run of a Run or a Compare click, and both runs of a "same cost" click."""

    compare: Callable
    same_cost: Callable


def run_in_gpu_call(pool: ModelPool, runner: Callable, model_id: str, *args, **kwargs):
    """The body of a GPU function: ``runner(llm, *args, ...)`` on the pool's model with Gradio's
    progress and the visitor's stop check; any failure as one line (`gpu_error`)."""
    progress = gr.Progress()
    try:
        return runner(pool.get(model_id), *args, progress=lambda fraction, desc: progress(fraction, desc=desc),
                      should_stop=client_gone(), **kwargs)
    except Exception as err:  # noqa: BLE001 - the worker reports one line, the server log the rest
        raise gpu_error(err) from None


def gpu_error(err: Exception) -> gr.Error:
    """An exception inside a GPU worker as one line for the visitor (the log keeps the rest)."""
    if isinstance(err, OutOfMemory):
        log.warning("out of memory: %s", err)
    elif isinstance(err, Cancelled):
        log.info("%s", err)
    elif not isinstance(err, ValueError):
        log.exception("GPU work failed")
    return gr.Error(one_line(err), print_exception=False)


def refuse(err: Exception) -> gr.Error:
    """Any failure of a request as one line naming the upload, never the server's folders."""
    message = str(err.message) if isinstance(err, gr.Error) else one_line(err)
    if not isinstance(err, (gr.Error, ValueError, ModelUnavailable, OutOfMemory, Cancelled)):
        log.exception("request failed")
    return gr.Error(hide_folders(message), print_exception=False)


def warn(notes) -> None:
    """Each note of a result as a warning on the page."""
    for note in notes:
        gr.Warning(note)


class Tab:
    """A tab's handlers, bound to the app's state and its GPU calls."""

    def __init__(self, state: AppState, gpu: GpuCalls):
        self.state, self.gpu = state, gpu


class ComparisonTab(Tab):
    """A tab whose button runs the baseline and methods at one retention (Run, Compare)."""

    def respond(self, draw: Callable, methods: Callable[[], list[str]], video, question, model_id, retention, frames,
                knob_values: tuple, max_new_tokens, progress):
        """Admit the request (`stc.demo.admission`; ``methods()`` gives the methods, the knobs are
        `stc.demo.KNOBS` in order), run the comparison in one GPU call and ``draw(llm, result)``;
        any failure as one line in the UI."""
        try:
            knobs = dict(zip(KNOBS, knob_values))
            chosen = methods()

            def controls():
                checked = check_controls(frames, max_new_tokens)
                return checked + (tuple(make_config(m, retention, **knobs) for m in chosen),)

            def fits(llm, checked):
                for config in checked[2]:
                    check_layer(config, llm)

            request = admit(self.state, video, question, model_id, controls=controls, fits=fits, progress=progress)
            num_frames, new_tokens, configs = request.controls
            llm, limits = request.llm, self.state.limits
            result = self.gpu.compare(llm.model_id, request.path, request.question, configs, num_frames, new_tokens,
                                      limits.max_generate_seconds, limits.max_decode_seconds)
            result.video_name = request.video_name
            warn(result.notes)
            progress(1.0, desc="drawing")
            return draw(llm, result)
        except Exception as err:  # noqa: BLE001 - every failure is one line in the UI; the app keeps serving
            raise refuse(err) from None


def answer_boxes(labels: tuple[str, str], ids: tuple[str, str], summary_id: str, table_id: str, **table) -> tuple:
    """Two answers side by side, the summary under them and the cost table (one row per run)."""
    with gr.Row():
        first = gr.Textbox(label=labels[0], lines=6, elem_id=ids[0])
        second = gr.Textbox(label=labels[1], lines=6, elem_id=ids[1])
    summary = gr.Markdown(elem_id=summary_id)
    costs = gr.Dataframe(headers=COST_HEADERS, label="costs, one row per run", wrap=True, elem_id=table_id,
                         column_widths=COST_WIDTHS, **table)
    return first, second, summary, costs


def cost_table(result) -> dict:
    return {"headers": COST_HEADERS, "data": cost_rows(result)}


def gpu_note(state: AppState, model_id, frames, max_new_tokens, methods=None) -> str:
    """On ZeroGPU, before a Run or Compare click: the GPU time it will ask for and whether an
    anonymous visitor's quota covers it (empty elsewhere). ``methods`` None: a Run (one method)."""
    if not on_zero_gpu():
        return ""
    try:
        runs = max(1, len(methods)) if methods is not None else 1
        seconds = gpu_seconds(model_id, "", "", (None,) * runs, int(frames), int(max_new_tokens),
                              state.limits.max_generate_seconds)
    except (TypeError, ValueError):
        return ""
    return quota_note(seconds)


def long_gpu_note(state: AppState, model_id, budget, frames, max_new_tokens) -> str:
    """On ZeroGPU, before a "same cost" click: the GPU time it will ask for (empty elsewhere)."""
    if not on_zero_gpu():
        return ""
    try:
        seconds = long_gpu_seconds(model_id, "", "", int(budget), int(frames), int(max_new_tokens),
                                   state.limits.max_generate_seconds)
    except (TypeError, ValueError):
        return ""
    return quota_note(seconds)
