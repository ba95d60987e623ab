"""The "baseline vs one method" tab: the Run button answers with every visual token and with one
method's, and shows both answers, the method's retention grid, the costs and the chart."""

from __future__ import annotations

import gradio as gr

from ...methods import get_method
from ...video import probe
from ...viz import cost_chart, retention_grid
from ..present import details, grid_titles, shown_text
from ..requests import FRAMES, KNOBS, MAX_NEW_TOKENS, RETENTION_PERCENT, knob_default
from .common import GRID_LEGEND, ComparisonTab, answer_boxes, cost_table


def compressed_label(method: str, retention: float):
    """Name the compressed answer after the method and retention that produced it."""
    return gr.Textbox(label=f"compressed — {method} {float(retention):g}%")


def knob_states(method: str):
    """Grey out the advanced controls the chosen method does not read."""
    try:
        uses = set(get_method(method).uses)
    except ValueError:
        uses = set(KNOBS)
    return [gr.update(interactive=name in uses) for name in KNOBS]


class SingleTab(ComparisonTab):
    """The tab's handlers and its part of the page."""

    def run(self, video, question, model_id, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
            inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
        """The Run button: the baseline and one method; both answers, its grid, costs and chart."""
        return self.respond(self._draw, lambda: [method], video, question, model_id, retention, frames,
                            (tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight), max_new_tokens, progress)

    def _draw(self, llm, result) -> tuple:
        (title,) = grid_titles(result)
        grid = retention_grid(result.frames, result.compressed.provenance, timestamps=result.timestamps, title=title)
        chart = cost_chart(result.baseline.stats, result.compressed.stats, labels=result.labels,
                           title=f"{result.model_id} on {result.device} · {len(result.frames)} frames")
        return (self.state.banner_for(llm), shown_text(result.baseline), shown_text(result.compressed), grid,
                cost_table(result), chart, details(result))

    def run_example(self, video, question):
        """Examples run with the default model and controls (what the Space caches lazily), on as
        many frames as the clip has up to the default (the synthetic clips have 8)."""
        try:
            frames = min(FRAMES[2], max(FRAMES[0], probe(video).frames))
        except (ValueError, TypeError):
            frames = FRAMES[2]
        return self.run(video, question, self.state.startup.llm.model_id, RETENTION_PERCENT[2], frames, "stc",
                        *(knob_default(name) for name in KNOBS), MAX_NEW_TOKENS[2])

    def layout(self) -> None:
        """The tab's outputs (inside its `gr.Tab`)."""
        self.baseline_answer, self.compressed_answer, self.summary, self.table = answer_boxes(
            ("baseline — all visual tokens", "compressed — stc"), ("baseline-answer", "compressed-answer"),
            "summary", "metrics", max_height=800)
        gr.Markdown("### Token retention — every sampled frame, every patch")
        self.grid = gr.Image(show_label=False, type="pil", format="png", elem_id="grid")
        gr.Markdown(GRID_LEGEND)
        gr.Markdown("### Baseline vs compressed")
        self.chart = gr.Image(show_label=False, type="pil", format="png", elem_id="chart")

    def outputs(self, c) -> list:
        return [c.banner, self.baseline_answer, self.compressed_answer, self.grid, self.table, self.chart,
                self.summary]

    def wire(self, c) -> None:
        """The Run button (``c``: the page's shared controls, `Controls`)."""
        c.run_button.click(self.run, c.run_inputs(), self.outputs(c), api_name="run", concurrency_id="model").success(
            compressed_label, [c.method, c.retention], self.compressed_answer, api_visibility="private", queue=False)
        c.run_button.click(lambda: gr.Tabs(selected="single"), None, c.tabs, api_visibility="private", queue=False)
