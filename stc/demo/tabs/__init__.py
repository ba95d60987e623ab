"""The page: one module per tab (`single`, `compare`, `same_cost`), the controls they share,
and `DemoApp`, which builds the page for one `AppState` and launches it.

A request's path through the modules: Gradio's queue (`gradio_overrides.FairQueue`: one
visitor's share) -> `Demo.preprocess_data` (`gradio_overrides.input_problem`: each raw value)
-> the tab's handler (`SingleTab.run`, `CompareTab.run`, `SameCostTab.run`) -> `admission.admit`
(the request checked, the model loaded) -> one `@spaces.GPU` function of app.py (`common.run_in_gpu_call`:
`stc.demo.run_comparison` or `stc.demo.run_same_cost`) -> the handler draws the result
(`stc.demo.present`, `stc.viz`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from ...models.family import MAX_QUESTION_CHARS
from ..app_state import AppState
from ..gradio_overrides import Demo
from ..loading import on_space, on_zero_gpu
from ..requests import FRAMES, KNOBS, MAX_NEW_TOKENS, RETENTION_PERCENT, knob_default, limits_text, method_choices
from .common import GpuCalls, gpu_note, long_gpu_note
from .compare import CompareTab
from .examples import EXAMPLE_LABELS, EXAMPLES
from .same_cost import SameCostTab
from .single import SingleTab, knob_states

__all__ = ["DemoApp", "GpuCalls"]

INTRO = (
    "# stc — keep 2% of a video's visual tokens\n"
    "Training-free token compression for Video-LLMs (Du et al., *Unified Spatiotemporal Token "
    "Compression for Video-LLMs at Ultra-Low Retention*, CVPR 2026). One Run answers your question "
    "twice on the same model: with every visual token, and with the tokens stc keeps. "
    "*Compare methods* runs the baseline and every method you tick on the same model and video; "
    "*same cost, more frames* gives stc hundreds of frames for the tokens a few uncompressed frames cost."
)


class Controls:
    """The controls every tab reads (the left column), the banner and the tabs."""

    def layout(self, state: AppState, methods: list[str]) -> None:
        llm = state.startup.llm
        self.video = gr.Video(label="video", sources=["upload"], elem_id="video")
        self.question = gr.Textbox(label="question", placeholder="What happens in this video?", lines=2,
                                   max_length=MAX_QUESTION_CHARS, elem_id="question")
        self.model = gr.Dropdown(state.model_choices, value=llm.model_id, label="model", elem_id="model")
        self.retention = gr.Slider(*RETENTION_PERCENT[:2], value=RETENTION_PERCENT[2], step=0.5,
                                   label="retention (% of visual tokens entering the LLM)", elem_id="retention")
        self.frames = gr.Slider(*FRAMES[:2], value=FRAMES[2], step=4, label="frames sampled", elem_id="frames")
        with gr.Accordion("advanced", open=False):
            self.method = gr.Dropdown(methods, value="stc" if "stc" in methods else methods[0], label="method (Run)")
            default = knob_default  # STCConfig's defaults, written once there
            self.tau = gr.Slider(0.05, 1.0, value=default("tau"), step=0.05,
                                 label="τ — similarity threshold of unified selection")
            self.cluster_ratio = gr.Slider(0.0, 0.95, value=default("cluster_ratio"), step=0.05,
                                           label="cluster ratio — budget share of refilled clusters")
            self.knn_k = gr.Slider(1, 32, value=default("knn_k"), step=1, label="k — neighbours of the DPC-kNN density")
            self.inner_layer = gr.Number(value=default("inner_layer"), precision=0, minimum=0,
                                         label="K — decoder layer of stage 2 (empty: the method's default)")
            self.inner_keep = gr.Slider(0.05, 1.0, value=default("inner_keep"), step=0.05,
                                        label="R — share of visual tokens kept at layer K (1 = off)")
            self.text_weight = gr.Slider(0.0, 1.0, value=default("text_weight"), step=0.05,
                                         label="λ — weight of text similarity vs attention")
            self.max_new_tokens = gr.Slider(*MAX_NEW_TOKENS[:2], value=MAX_NEW_TOKENS[2], step=8,
                                            label="max new tokens")
        self.run_button = gr.Button("Run", variant="primary", elem_id="run")
        # On ZeroGPU: what the next click asks for, said before the click.
        self.run_note = gr.Markdown(gpu_note(state, llm.model_id, FRAMES[2], MAX_NEW_TOKENS[2]), elem_id="gpu-note",
                                    visible=on_zero_gpu())

    @property
    def knobs(self) -> list:
        """The advanced controls, in `stc.demo.KNOBS` order."""
        return [getattr(self, name) for name in KNOBS]

    def run_inputs(self) -> list:
        return [self.video, self.question, self.model, self.retention, self.frames, self.method, *self.knobs,
                self.max_new_tokens]


class DemoApp:
    """The app for one `AppState`: its tabs' handlers (``single``, ``compare``, ``same_cost``),
    `build` (the page) and `launch`. ``demo`` is the page `create_app` built."""

    def __init__(self, state: AppState, gpu: GpuCalls):
        self.state = state
        self.single, self.compare, self.same_cost = SingleTab(state, gpu), CompareTab(state, gpu), SameCostTab(state, gpu)
        self.demo: gr.Blocks | None = None

    def build(self) -> gr.Blocks:
        """The page, with its queue (`FairQueue`) and its limits as the state has them now."""
        state, llm, methods = self.state, self.state.startup.llm, method_choices()
        zero_gpu = on_zero_gpu()
        c = Controls()
        # Uploads and drawn outputs are deleted after cache_max_age (checked every sixth of it).
        age = int(state.limits.cache_max_age)
        with Demo(state, title="stc: unified spatiotemporal token compression",
                  delete_cache=(max(1, age // 6), age)) as demo:
            gr.Markdown(INTRO)
            c.banner = gr.Markdown(state.banner_for(llm), elem_id="banner")
            with gr.Row():
                with gr.Column(scale=1):
                    c.layout(state, methods)
                with gr.Column(scale=2):
                    with gr.Tabs(selected="single") as c.tabs:
                        with gr.Tab("baseline vs one method", id="single", elem_id="tab-single"):
                            self.single.layout()
                        with gr.Tab("compare methods", id="compare", elem_id="tab-compare"):
                            self.compare.layout(methods, llm.model_id, zero_gpu)
                        with gr.Tab("same cost, more frames", id="long", elem_id="tab-long"):
                            self.same_cost.layout(llm, llm.model_id, zero_gpu)
            long = self.same_cost
            # The names messages give the controls (those of the handler's own checks).
            demo.input_names = {comp._id: name for comp, name in [
                (c.video, "video"), (c.question, "question"), (c.model, "model"), (c.retention, "retention (%)"),
                (c.frames, "frames"), (c.method, "method"), (c.tau, "τ"), (c.cluster_ratio, "cluster ratio"),
                (c.knn_k, "kNN k"), (c.inner_layer, "K (stage-2 layer)"), (c.inner_keep, "R"),
                (c.text_weight, "λ"), (c.max_new_tokens, "max new tokens"), (self.compare.methods, "method"),
                (long.budget, "token budget"), (long.frames, "frames"), (long.page, "page"),
                (long.clusters, "refilled clusters")]}
            # Every button shares one concurrency group: one model, one request on it at a time.
            self.single.wire(c)
            self.compare.wire(c)
            long.wire(c)
            c.method.change(knob_states, c.method, c.knobs, api_visibility="private", queue=False)
            if zero_gpu:
                self._wire_notes(c)
            gr.Examples([[str(state.root / v), q] for v, q in EXAMPLES], [c.video, c.question],
                        self.single.outputs(c), fn=self.single.run_example, example_labels=EXAMPLE_LABELS,
                        cache_examples=on_space(), cache_mode="lazy")
            gr.Markdown(
                "FLOPs follow the paper's convention (LLM only, visual tokens, 100 decoded tokens). Vision encoding "
                "runs once per video and is shared by every run; time to first token counts it for each.\n\n"
                + limits_text(state.limits)
            )
        # One request at a time by default (the model and its feature cache are shared); others
        # queue, and beyond queue_size a visitor is told the app is busy.
        demo.queue(default_concurrency_limit=state.limits.concurrency, max_size=state.limits.queue_size)
        return demo

    def _wire_notes(self, c: Controls) -> None:
        """On ZeroGPU: what the next click of each button asks for, kept current."""
        long = self.same_cost
        note = partial(gpu_note, self.state)
        for control in (c.model, c.frames, c.max_new_tokens, self.compare.methods):
            control.change(note, [c.model, c.frames, c.max_new_tokens], c.run_note, api_visibility="private",
                           queue=False)
            control.change(note, [c.model, c.frames, c.max_new_tokens, self.compare.methods], self.compare.note,
                           api_visibility="private", queue=False)
        for control in (c.model, long.budget, long.frames, c.max_new_tokens):
            control.change(partial(long_gpu_note, self.state), [c.model, long.budget, long.frames, c.max_new_tokens],
                           long.note, api_visibility="private", queue=False)

    def launch(self, blocks: gr.Blocks | None = None, **kwargs):
        """Launch ``blocks`` (default: ``demo``) with the app's settings; keyword arguments
        override them (tests pass a loopback address and a free port)."""
        args, limits = self.state.args, self.state.limits
        # show_error: Gradio's own refusals (a path that is not an upload, a value outside a slider's
        # range) reach the visitor as their one-line message, not a bare "Error".
        settings = dict(server_name=args.host, server_port=args.port, share=args.share or None,
                        max_file_size=int(limits.max_upload_mb * 2**20),
                        allowed_paths=[str(self.state.examples_dir / Path(clip).name) for clip, _ in EXAMPLES],
                        show_error=True)
        settings.update(kwargs)
        return (blocks or self.demo).launch(**settings)
