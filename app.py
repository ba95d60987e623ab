"""stc demo: one question about one video, answered with all visual tokens and with stc, or with
every method side by side.

    python app.py                      # default model (see stc/demo.py), http://127.0.0.1:7860
    python app.py --model tiny-random/llava-onevision
    python app.py --share              # a temporary public link
    python app.py --max-video-seconds 600 --queue-size 8     # limits (see --help, README "Limits")

UI wiring only; the logic lives in stc/demo.py (models, comparisons, tables, limits) and
stc/viz.py (the retention grid and the cost chart). On a ZeroGPU Space `spaces` must be imported
before torch touches CUDA, the model is loaded at import (ZeroGPU packs its weights at launch),
and all GPU work runs in one `@spaces.GPU` function per click (`compare_on_gpu`,
`compare_methods_on_gpu`), in a forked worker, with picklable arguments and results.

A request is checked before any GPU time is spent: its controls, that its video is an upload
(or an example) and nothing else on the server, and the video's header against the duration and
frame-size limits. Every failure reaches the visitor as one line (`gr.Error`), notes as
`gr.Warning`, and the app keeps serving.
"""

import spaces  # noqa: I001 - first: on ZeroGPU it patches torch before anything initialises CUDA

import argparse
import logging
import sys
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from stc import OutOfMemory, STCConfig, get_method
from stc import demo as logic
from stc import viz
from stc.models.base import MAX_QUESTION_CHARS

HERE = Path(__file__).resolve().parent
log = logging.getLogger("stc.app")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stc demo: baseline vs compressed answers about a video")
    parser.add_argument("--model", help="hub id, local checkpoint or tiny-random/... (default: $STC_MODEL, "
                        "else LLaVA-OneVision: 7B on a Space, 0.5B elsewhere; offline: the tiny model)")
    parser.add_argument("--share", action="store_true", help="also serve a temporary public gradio.live link")
    parser.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    limits = logic.Limits()
    for name, help_text in [
        ("concurrency", "requests run at once"),
        ("queue_size", "requests that may wait; more are told the app is busy"),
        ("max_upload_mb", "largest upload in MB (MiB)"),
        ("max_video_seconds", "longest video in seconds (read from its header, before decoding)"),
        ("max_video_side", "largest frame side in pixels"),
        ("max_generate_seconds", "each answer stops generating after this many seconds"),
        ("cache_max_age", "uploads and outputs are deleted from disk after this many seconds"),
    ]:
        kind = int if isinstance(getattr(limits, name), int) else float
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{help_text} (default: ${logic.Limits.ENV[name]}, else {getattr(limits, name):g})")
    return parser.parse_args(argv)


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
LIMITS = logic.Limits.from_env(**{name: getattr(ARGS, name) for name in logic.Limits.ENV})

# Module level on purpose: on ZeroGPU the weights moved to "cuda" here are packed at launch.
POOL = logic.ModelPool()
STARTUP = POOL.load_default(ARGS.model)
# The models a visitor may pick; nothing else is ever loaded on a request.
MODEL_CHOICES = logic.model_choices(STARTUP.llm.model_id, STARTUP.requested)
MODEL_IDS = [mid for _, mid in MODEL_CHOICES]

# Examples: short clips shipped in examples/ (sources and licence in examples/README.md).
EXAMPLES_DIR = HERE / "examples"
EXAMPLES = [
    ["examples/earth_at_night.mp4", "Which parts of the Earth are lit up as it turns?"],
    ["examples/thanks_for_watching.mp4", "What text appears on the screen, and in which colour?"],
    ["examples/earth_rotation.mp4", "What is shown in this video, and how does it move?"],
]

KNOBS = ("tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight")

GRID_LEGEND = (
    "A patch outlined in green is kept as itself; a tinted patch was merged into a refilled token "
    "(one colour per cluster); white hatching marks tokens merged away at layer K; dark patches were "
    "dropped. The count under each frame is the tokens it sends to the LLM — a red frame sends none."
)


def video_dirs() -> list[Path | str]:
    """Where a request's video may come from: Gradio's upload folder (uploads, and the copies of
    the examples it serves) and the examples folder. Read per request ($GRADIO_TEMP_DIR)."""
    return [get_upload_folder(), EXAMPLES_DIR]


def _gpu_error(err: Exception) -> gr.Error:
    """An exception inside a GPU worker as one line for the visitor (the log keeps the rest)."""
    if isinstance(err, OutOfMemory):
        log.warning("out of memory: %s", err)
    elif not isinstance(err, ValueError):
        log.exception("GPU work failed")
    return gr.Error(logic.one_line(err), print_exception=False)


@spaces.GPU(duration=logic.gpu_seconds)
def compare_on_gpu(model_id: str, video: str, question: str, config: STCConfig, num_frames: int,
                   max_new_tokens: int, max_seconds: float | None = None) -> logic.Comparison:
    """Both runs on the GPU (a forked worker on ZeroGPU): strings and a frozen config in, a
    `Comparison` of numpy arrays and dataclasses out."""
    progress = gr.Progress()
    try:
        llm = POOL.get(model_id)
        return logic.compare(llm, video, question, config, num_frames=num_frames, max_new_tokens=max_new_tokens,
                             max_seconds=max_seconds, progress=lambda fraction, desc: progress(fraction, desc=desc))
    except Exception as err:  # noqa: BLE001 - the worker reports one line, the server log the rest
        raise _gpu_error(err) from None


@spaces.GPU(duration=logic.gpu_seconds)
def compare_methods_on_gpu(model_id: str, video: str, question: str, configs: tuple[STCConfig, ...],
                           num_frames: int, max_new_tokens: int,
                           max_seconds: float | None = None) -> logic.MethodComparison:
    """The baseline and every chosen method on the GPU in one slot (its duration grows with the
    number of methods); the video is decoded and encoded once."""
    progress = gr.Progress()
    try:
        llm = POOL.get(model_id)
        return logic.compare_methods(llm, video, question, configs, num_frames=num_frames,
                                     max_new_tokens=max_new_tokens, max_seconds=max_seconds,
                                     progress=lambda fraction, desc: progress(fraction, desc=desc))
    except Exception as err:  # noqa: BLE001
        raise _gpu_error(err) from None


def _refuse(err: Exception) -> gr.Error:
    """Any failure of a request as one line naming the upload, never the server's folders."""
    message = str(err.message) if isinstance(err, gr.Error) else logic.one_line(err)
    if not isinstance(err, (gr.Error, ValueError, logic.ModelUnavailable, OutOfMemory)):
        log.exception("request failed")
    return gr.Error(logic.hide_folders(message), print_exception=False)


def _checked(video, question, model_id, frames, max_new_tokens):
    """The request's common checks, before any model or GPU work: returns (path on disk, name
    to show, question, frames, max_new_tokens, model id)."""
    path, question, frames, max_new_tokens = logic.check_request(video, question, frames, max_new_tokens)
    shown = Path(path).name
    path = logic.check_video_path(path, video_dirs())
    model_id = logic.check_model(model_id, MODEL_IDS)
    logic.check_video_limits(path, LIMITS)
    return path, shown, question, frames, max_new_tokens, model_id


def _warn(notes: list[str]) -> None:
    for note in notes:
        gr.Warning(note)


def run(video, question, model_id, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
        inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
    """The Run button: validate, load the model if needed, compare, draw."""
    try:
        path, shown, question, frames, max_new_tokens, model_id = _checked(
            video, question, model_id, frames, max_new_tokens)
        config = logic.make_config(method, retention, tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k,
                                   inner_layer=inner_layer, inner_keep=inner_keep, text_weight=text_weight)
        progress(0.0, desc=f"loading {model_id}")
        llm = POOL.get(model_id)
        logic.check_layer(config, llm)
        result = compare_on_gpu(llm.model_id, path, question, config, frames, max_new_tokens,
                                LIMITS.max_generate_seconds)
        result.video_name = shown
        progress(1.0, desc="drawing")
        grid = viz.retention_grid(result.frames, result.compressed.provenance, timestamps=result.timestamps,
                                  title=logic.grid_title(result))
        chart = viz.cost_chart(result.baseline.stats, result.compressed.stats,
                               labels=("baseline", logic.run_label(config)),
                               title=f"{result.model_id} on {result.device} · {len(result.frames)} frames")
        table = {"headers": logic.METRIC_HEADERS, "data": logic.metrics_rows(result)}
        _warn(result.notes)
        return (banner_for(llm), logic.shown_text(result.baseline), logic.shown_text(result.compressed), grid,
                table, chart, logic.details(result))
    except Exception as err:  # noqa: BLE001 - every failure is one line in the UI; the app keeps serving
        raise _refuse(err) from None


def run_methods(video, question, model_id, retention, frames, methods, tau, cluster_ratio, knn_k, inner_layer,
                inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
    """The Compare button: the baseline and every ticked method at one retention, one GPU slot."""
    try:
        path, shown, question, frames, max_new_tokens, model_id = _checked(
            video, question, model_id, frames, max_new_tokens)
        configs = tuple(
            logic.make_config(m, retention, tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k,
                              inner_layer=inner_layer, inner_keep=inner_keep, text_weight=text_weight)
            for m in logic.check_methods(methods)
        )
        progress(0.0, desc=f"loading {model_id}")
        llm = POOL.get(model_id)
        for config in configs:
            logic.check_layer(config, llm)
        result = compare_methods_on_gpu(llm.model_id, path, question, configs, frames, max_new_tokens,
                                        LIMITS.max_generate_seconds)
        result.video_name = shown
        progress(1.0, desc="drawing")
        grids = viz.retention_grids(result.frames, [a.provenance for a in result.runs], timestamps=result.timestamps,
                                    titles=[logic.answer_title(a, len(result.frames)) for a in result.runs])
        answers = {"headers": logic.METHODS_ANSWER_HEADERS, "data": logic.methods_answer_rows(result)}
        table = {"headers": logic.METHODS_HEADERS, "data": logic.methods_rows(result)}
        _warn(result.notes)
        return banner_for(llm), answers, table, grids, logic.methods_details(result)
    except Exception as err:  # noqa: BLE001
        raise _refuse(err) from None


def banner_for(llm) -> str:
    reason = STARTUP.fallback_reason if llm is STARTUP.llm else None
    return logic.banner(llm, fallback_reason=reason)


def run_example(video, question):
    """Examples run with the default model and controls (what the Space caches lazily)."""
    return run(video, question, STARTUP.llm.model_id, logic.RETENTION_PERCENT[2], logic.FRAMES[2], "stc",
               0.7, 0.3, 7, None, 0.5, 0.5, logic.MAX_NEW_TOKENS[2])


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


def build_demo() -> gr.Blocks:
    llm = STARTUP.llm
    methods = logic.method_choices()
    # Uploads and drawn outputs are deleted after cache_max_age (checked every sixth of it).
    age = int(LIMITS.cache_max_age)
    with gr.Blocks(title="stc: unified spatiotemporal token compression",
                   delete_cache=(max(1, age // 6), age)) as demo:
        gr.Markdown(
            "# stc — keep 2% of a video's visual tokens\n"
            "Training-free token compression for Video-LLMs (Du et al., *Unified Spatiotemporal Token "
            "Compression for Video-LLMs at Ultra-Low Retention*, CVPR 2026). One Run answers your question "
            "twice on the same model: with every visual token, and with the tokens stc keeps. "
            "*Compare methods* runs the baseline and every method you tick on the same model and video."
        )
        banner = gr.Markdown(logic.banner(llm, fallback_reason=STARTUP.fallback_reason), elem_id="banner")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="video", sources=["upload"], elem_id="video")
                question = gr.Textbox(label="question", placeholder="What happens in this video?", lines=2,
                                      max_length=MAX_QUESTION_CHARS, elem_id="question")
                model = gr.Dropdown(MODEL_CHOICES, value=llm.model_id, label="model", elem_id="model")
                retention = gr.Slider(*logic.RETENTION_PERCENT[:2], value=logic.RETENTION_PERCENT[2], step=0.5,
                                      label="retention (% of visual tokens entering the LLM)", elem_id="retention")
                frames = gr.Slider(*logic.FRAMES[:2], value=logic.FRAMES[2], step=4, label="frames sampled",
                                   elem_id="frames")
                with gr.Accordion("advanced", open=False):
                    method = gr.Dropdown(methods, value="stc" if "stc" in methods else methods[0],
                                         label="method (Run)")
                    tau = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="τ — similarity threshold of unified selection")
                    cluster_ratio = gr.Slider(0.0, 0.95, value=0.3, step=0.05, label="cluster ratio — budget share of refilled clusters")
                    knn_k = gr.Slider(1, 32, value=7, step=1, label="k — neighbours of the DPC-kNN density")
                    inner_layer = gr.Number(value=None, precision=0, minimum=0,
                                            label="K — decoder layer of stage 2 (empty: the method's default)")
                    inner_keep = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="R — share of visual tokens kept at layer K (1 = off)")
                    text_weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="λ — weight of text similarity vs attention")
                    max_new_tokens = gr.Slider(*logic.MAX_NEW_TOKENS[:2], value=logic.MAX_NEW_TOKENS[2], step=8,
                                               label="max new tokens")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                with gr.Tabs(selected="single") as tabs:
                    with gr.Tab("baseline vs one method", id="single", elem_id="tab-single"):
                        with gr.Row():
                            baseline_answer = gr.Textbox(label="baseline — all visual tokens", lines=6,
                                                         elem_id="baseline-answer")
                            compressed_answer = gr.Textbox(label="compressed — stc", lines=6,
                                                           elem_id="compressed-answer")
                        summary = gr.Markdown(elem_id="summary")
                        table = gr.Dataframe(headers=logic.METRIC_HEADERS, label="costs", wrap=True, elem_id="metrics",
                                             column_widths=["36%", "18%", "24%", "22%"], max_height=800)
                        gr.Markdown("### Token retention — every sampled frame, every patch")
                        grid = gr.Image(show_label=False, type="pil", format="png", elem_id="grid")
                        gr.Markdown(GRID_LEGEND)
                        gr.Markdown("### Baseline vs compressed")
                        chart = gr.Image(show_label=False, type="pil", format="png", elem_id="chart")
                    with gr.Tab("compare methods", id="compare", elem_id="tab-compare"):
                        compare_methods = gr.CheckboxGroup(
                            methods, value=[m for m in logic.COMPARE_DEFAULT if m in methods],
                            label="methods, each at the retention on the left (plus the baseline)",
                            elem_id="compare-methods")
                        compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                        compare_summary = gr.Markdown(elem_id="compare-summary")
                        compare_answers = gr.Dataframe(headers=logic.METHODS_ANSWER_HEADERS, label="answers",
                                                       wrap=True, elem_id="compare-answers",
                                                       column_widths=["22%", "78%"], max_height=600)
                        compare_table = gr.Dataframe(headers=logic.METHODS_HEADERS, label="costs, one row per run",
                                                     wrap=True, elem_id="compare-metrics", max_height=600,
                                                     column_widths=["12%", "15%", "9%", "9%", "9%", "8%", "11%",
                                                                    "8%", "9%", "10%"])
                        gr.Markdown("### Token retention of each method")
                        compare_grids = gr.Image(show_label=False, type="pil", format="png", elem_id="compare-grids")
                        gr.Markdown(GRID_LEGEND)

        inputs = [video, question, model, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
                  inner_keep, text_weight, max_new_tokens]
        outputs = [banner, baseline_answer, compressed_answer, grid, table, chart, summary]
        # Both buttons share one concurrency group: one model, one request on it at a time.
        run_button.click(run, inputs, outputs, api_name="run", concurrency_id="model").success(
            compressed_label, [method, retention], compressed_answer, api_visibility="private", queue=False)
        run_button.click(lambda: gr.Tabs(selected="single"), None, tabs, api_visibility="private", queue=False)
        compare_inputs = [video, question, model, retention, frames, compare_methods, tau, cluster_ratio, knn_k,
                          inner_layer, inner_keep, text_weight, max_new_tokens]
        compare_button.click(run_methods, compare_inputs,
                             [banner, compare_answers, compare_table, compare_grids, compare_summary],
                             api_name="compare", concurrency_id="model")
        method.change(knob_states, method, [tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight],
                      api_visibility="private", queue=False)
        gr.Examples(
            [[str(HERE / v), q] for v, q in EXAMPLES],
            [video, question],
            outputs,
            fn=run_example,
            cache_examples=logic.on_space(),
            cache_mode="lazy",
        )
        gr.Markdown(
            "FLOPs follow the paper's convention (LLM only, visual tokens, 100 decoded tokens). Vision encoding "
            "runs once per video and is shared by every run; time to first token counts it for each.\n\n"
            + logic.limits_text(LIMITS)
        )
    # One request at a time by default (the model and its feature cache are shared); others
    # queue, and beyond queue_size a visitor is told the app is busy.
    demo.queue(default_concurrency_limit=LIMITS.concurrency, max_size=LIMITS.queue_size)
    return demo


demo = build_demo()


def launch(blocks: gr.Blocks | None = None, **kwargs):
    """Launch ``blocks`` (default: the module's demo) with the app's settings; keyword arguments
    override them (tests pass a loopback address and a free port)."""
    # show_error: Gradio's own refusals (a path that is not an upload, a value outside a slider's
    # range) reach the visitor as their one-line message, not a bare "Error".
    settings = dict(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share or None,
                    max_file_size=int(LIMITS.max_upload_mb * 2**20), allowed_paths=[str(EXAMPLES_DIR)],
                    show_error=True)
    settings.update(kwargs)
    return (blocks or demo).launch(**settings)


if __name__ == "__main__":
    launch()
