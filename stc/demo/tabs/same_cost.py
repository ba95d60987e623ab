"""The "same cost, more frames" tab: stc on every frame and the baseline on the frames the same
token budget buys; both answers, their costs, the tokens timeline and stc's retention grid a
page at a time (another page, or other cluster marks, drawn again from the last result)."""

from __future__ import annotations

import gradio as gr

from ...viz import CLUSTER_MODES, page_ranges, retention_page, tokens_timeline
from ..admission import admit
from ..long import (
    BUDGET_TOKENS,
    CPU_MAX_FRAMES,
    LONG_FRAMES,
    MAX_PAGES,
    PER_PAGE,
    SameCost,
    check_long_controls,
    check_long_frames,
    check_page,
    frames_text,
    on_gpu,
    page_title,
    same_cost_details,
    timeline_title,
)
from ..present import shown_text
from ..requests import MAX_NEW_TOKENS
from .common import GRID_LEGEND, Tab, answer_boxes, cost_table, long_gpu_note, refuse, warn


def page(result: SameCost, number, clusters: str = CLUSTER_MODES[0]) -> tuple:
    """(page ``number`` of stc's retention grid, the number of pages), `PER_PAGE` frames a page;
    ``clusters``: how refilled patches are marked (`CLUSTER_MODES`)."""
    provenance = result.stc.provenance
    ranges = page_ranges(len(result.frames), PER_PAGE, provenance.frames_per_slot)
    number = check_page(number, len(ranges))
    title = page_title(result, number, len(ranges), *ranges[number - 1])
    return retention_page(result.frames, provenance, number - 1, per_page=PER_PAGE,
                              timestamps=result.timestamps, title=title, clusters=clusters), len(ranges)


def controls_after(result):
    """After a "same cost" run: name each answer after the frames and tokens it read, and set
    the page control to the result's pages (its first page is shown)."""
    if not isinstance(result, SameCost):
        return gr.update(), gr.update(), gr.update()
    pages = len(page_ranges(len(result.frames), PER_PAGE, result.stc.provenance.frames_per_slot))
    baseline_label, stc_label = result.labels
    return (gr.Textbox(label=baseline_label), gr.Textbox(label=stc_label),
            gr.Slider(value=1, maximum=pages, interactive=pages > 1))


def show_page(result, number, clusters=CLUSTER_MODES[0]):
    """Another page of the last "same cost" result's grid (or the same one with refilled patches
    marked another way), drawn again without running the model."""
    try:
        if not isinstance(result, SameCost):
            raise ValueError("run “same cost, more frames” first")
        return page(result, number, clusters)[0]
    except Exception as err:  # noqa: BLE001
        raise refuse(err) from None


def redraw(result, number, clusters):
    """The cluster toggle (and after a run, which draws the default marks): the page shown, drawn
    again from the last result with refilled patches marked as chosen; nothing before a run."""
    if not isinstance(result, SameCost):
        return gr.update()
    return show_page(result, number, clusters)


class SameCostTab(Tab):
    """The tab's handler and its part of the page."""

    def run(self, video, question, model_id, budget, frames, max_new_tokens, progress=gr.Progress()):
        """The "same cost, more frames" button: stc on every frame and the baseline on the frames the
        same budget buys; both answers, their costs, the tokens timeline and page 1 of the grid."""
        try:
            request = admit(self.state, video, question, model_id,
                            controls=lambda: check_long_controls(budget, frames, max_new_tokens),
                            fits=lambda llm, checked: check_long_frames(llm, checked[1]), progress=progress)
            budget, frames, max_new_tokens = request.controls
            llm = request.llm
            result = self.gpu.same_cost(llm.model_id, request.path, request.question, budget, frames, max_new_tokens,
                                        self.state.limits.max_generate_seconds, self.state.limits.max_decode_seconds)
            result.video_name = request.video_name
            warn(result.notes)
            progress(1.0, desc="drawing")
            strip = tokens_timeline(result.stc.provenance, marks=result.baseline_index,
                                        timestamps=result.timestamps, title=timeline_title(result),
                                        marks_label=f"the {len(result.baseline_index)} frames the baseline sees")
            grid, _ = page(result, 1)
            return (self.state.banner_for(llm), shown_text(result.baseline), shown_text(result.stc),
                    cost_table(result), strip, grid, result, same_cost_details(result))
        except Exception as err:  # noqa: BLE001
            raise refuse(err) from None

    def layout(self, llm, model_id: str, zero_gpu: bool) -> None:
        """The tab's controls and outputs (inside its `gr.Tab`)."""
        gr.Markdown("One token budget, spent twice: stc reads many frames and keeps that many tokens; the "
                    "uncompressed model reads as many uniformly sampled frames as the same budget buys. "
                    + frames_text(on_gpu(llm)), elem_id="long-limits")
        frames_cap = LONG_FRAMES[1] if on_gpu(llm) else CPU_MAX_FRAMES
        with gr.Row():
            self.budget = gr.Slider(*BUDGET_TOKENS[:2], value=BUDGET_TOKENS[2], step=4,
                                    label="token budget (visual tokens entering the LLM, both runs)",
                                    elem_id="long-budget")
            self.frames = gr.Slider(LONG_FRAMES[0], frames_cap, step=4, value=min(LONG_FRAMES[2], frames_cap),
                                    label="frames stc reads", elem_id="long-frames")
        self.button = gr.Button("Same cost, more frames", variant="primary", elem_id="long")
        self.note = gr.Markdown(
            long_gpu_note(self.state, model_id, BUDGET_TOKENS[2], min(LONG_FRAMES[2], frames_cap), MAX_NEW_TOKENS[2]),
            elem_id="long-gpu-note", visible=zero_gpu)
        self.baseline, self.stc, self.summary, self.table = answer_boxes(
            ("baseline — the frames the budget buys", "stc — every frame, the same budget"),
            ("long-baseline-answer", "long-stc-answer"), "long-summary", "long-metrics")
        gr.Markdown("### Tokens each frame sends to the LLM — every frame")
        self.timeline = gr.Image(show_label=False, type="pil", format="png", elem_id="long-timeline")
        gr.Markdown(f"### Token retention, {PER_PAGE} frames a page")
        with gr.Row():
            self.page = gr.Slider(1, MAX_PAGES, value=1, step=1, label="page", interactive=False,
                                  elem_id="long-page", scale=3)
            self.clusters = gr.Radio(list(CLUSTER_MODES), value=CLUSTER_MODES[0], label="refilled clusters",
                                     elem_id="long-clusters", scale=1)
        self.grid = gr.Image(show_label=False, type="pil", format="png", elem_id="long-grid")
        gr.Markdown(GRID_LEGEND)
        self.result = gr.State()

    def wire(self, c) -> None:
        """The button, and the page and cluster controls (``c``: the page's shared controls)."""
        shown = [self.result, self.page, self.clusters]
        self.button.click(self.run, [c.video, c.question, c.model, self.budget, self.frames, c.max_new_tokens],
                          [c.banner, self.baseline, self.stc, self.table, self.timeline, self.grid, self.result,
                           self.summary], api_name="long", concurrency_id="model").success(
            controls_after, self.result, [self.baseline, self.stc, self.page], api_visibility="private", queue=False
        ).success(redraw, shown, self.grid, api_visibility="private")
        # Another page, or other cluster marks: drawn again from the last result, no model run.
        self.page.release(show_page, shown, self.grid, api_visibility="private")
        self.clusters.change(redraw, shown, self.grid, api_visibility="private")
