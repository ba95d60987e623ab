"""The "compare methods" tab: the baseline and every ticked method at one retention, in one GPU
slot; every answer, one cost row per method and one retention grid per method."""

from __future__ import annotations

import gradio as gr

from ...viz import retention_grids
from ..present import ANSWER_HEADERS, COST_HEADERS, answer_rows, details, grid_titles
from ..requests import COMPARE_DEFAULT, FRAMES, MAX_NEW_TOKENS, check_methods
from .common import COST_WIDTHS, GRID_LEGEND, ComparisonTab, cost_table, gpu_note


class CompareTab(ComparisonTab):
    """The tab's handler and its part of the page."""

    def run(self, video, question, model_id, retention, frames, methods, tau, cluster_ratio, knn_k, inner_layer,
            inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
        """The Compare button: the baseline and every ticked method at one retention, one GPU slot."""
        return self.respond(self._draw, lambda: check_methods(methods), video, question, model_id, retention, frames,
                            (tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight), max_new_tokens, progress)

    def _draw(self, llm, result) -> tuple:
        grids = retention_grids(result.frames, [a.provenance for a in result.runs], timestamps=result.timestamps,
                                titles=grid_titles(result))
        answers = {"headers": ANSWER_HEADERS, "data": answer_rows(result)}
        return self.state.banner_for(llm), answers, cost_table(result), grids, details(result)

    def layout(self, methods: list[str], model_id: str, zero_gpu: bool) -> None:
        """The tab's controls and outputs (inside its `gr.Tab`)."""
        self.methods = gr.CheckboxGroup(methods, value=[m for m in COMPARE_DEFAULT if m in methods],
                                        label="methods, each at the retention on the left (plus the baseline)",
                                        elem_id="compare-methods")
        self.button = gr.Button("Compare", variant="primary", elem_id="compare")
        self.note = gr.Markdown(gpu_note(self.state, model_id, FRAMES[2], MAX_NEW_TOKENS[2], COMPARE_DEFAULT),
                                elem_id="compare-gpu-note", visible=zero_gpu)
        self.summary = gr.Markdown(elem_id="compare-summary")
        self.answers = gr.Dataframe(headers=ANSWER_HEADERS, label="answers", wrap=True, elem_id="compare-answers",
                                    column_widths=["22%", "78%"], max_height=600)
        self.table = gr.Dataframe(headers=COST_HEADERS, label="costs, one row per run", wrap=True,
                                  elem_id="compare-metrics", max_height=600, column_widths=COST_WIDTHS)
        gr.Markdown("### Token retention of each method")
        self.grids = gr.Image(show_label=False, type="pil", format="png", elem_id="compare-grids")
        gr.Markdown(GRID_LEGEND)

    def wire(self, c) -> None:
        """The Compare button (``c``: the page's shared controls)."""
        inputs = [c.video, c.question, c.model, c.retention, c.frames, self.methods, *c.knobs, c.max_new_tokens]
        self.button.click(self.run, inputs, [c.banner, self.answers, self.table, self.grids, self.summary],
                          api_name="compare", concurrency_id="model")
