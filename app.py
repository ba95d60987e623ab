"""stc demo: one question about one video, answered with all visual tokens and with stc.

    python app.py                      # default model (see stc/demo.py), http://127.0.0.1:7860
    python app.py --model tiny-random/llava-onevision
    python app.py --share              # a temporary public link

UI wiring only; the logic lives in stc/demo.py (models, one comparison, tables) and stc/viz.py
(the retention grid and the cost chart). On a ZeroGPU Space `spaces` must be imported before
torch touches CUDA, the model is loaded at import (ZeroGPU packs its weights at launch), and all
GPU work runs in `compare_on_gpu`, in a forked worker, with picklable arguments and results.
"""

import spaces  # noqa: I001 - first: on ZeroGPU it patches torch before anything initialises CUDA

import argparse
import logging
import os
import sys
from pathlib import Path

import gradio as gr

from stc import STCConfig, get_method
from stc import demo as logic
from stc import viz

HERE = Path(__file__).resolve().parent
log = logging.getLogger("stc.app")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stc demo: baseline vs compressed answers about a video")
    parser.add_argument("--model", help="hub id, local checkpoint or tiny-random/... (default: $STC_MODEL, "
                        "else LLaVA-OneVision: 7B on a Space, 0.5B elsewhere; offline: the tiny model)")
    parser.add_argument("--share", action="store_true", help="also serve a temporary public gradio.live link")
    parser.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("STC_CONCURRENCY", 1)),
                        help="requests run at once (default 1); others wait in the queue")
    return parser.parse_args(argv)


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

# Module level on purpose: on ZeroGPU the weights moved to "cuda" here are packed at launch.
POOL = logic.ModelPool()
STARTUP = POOL.load_default(ARGS.model)

# Examples: short clips shipped in examples/ (sources and licence in examples/README.md).
EXAMPLES = [
    ["examples/earth_at_night.mp4", "Which parts of the Earth are lit up as it turns?"],
    ["examples/thanks_for_watching.mp4", "What text appears on the screen, and in which colour?"],
    ["examples/earth_rotation.mp4", "What is shown in this video, and how does it move?"],
]

KNOBS = ("tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight")


@spaces.GPU(duration=logic.gpu_seconds)
def compare_on_gpu(model_id: str, video: str, question: str, config: STCConfig, num_frames: int,
                   max_new_tokens: int) -> logic.Comparison:
    """Both runs on the GPU (a forked worker on ZeroGPU): strings and a frozen config in, a
    `Comparison` of numpy arrays and dataclasses out."""
    progress = gr.Progress()
    try:
        llm = POOL.get(model_id)
        return logic.compare(llm, video, question, config, num_frames=num_frames, max_new_tokens=max_new_tokens,
                             progress=lambda fraction, desc: progress(fraction, desc=desc))
    except Exception as err:  # noqa: BLE001 - the worker reports one line, the server log the rest
        if not isinstance(err, ValueError):
            log.exception("comparison failed")
        raise gr.Error(logic.one_line(err), print_exception=False) from None


def run(video, question, model_id, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
        inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
    """The Run button: validate, load the model if needed, compare, draw."""
    try:
        path, question, frames, max_new_tokens = logic.check_request(video, question, frames, max_new_tokens)
        config = logic.make_config(method, retention, tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k,
                                   inner_layer=inner_layer, inner_keep=inner_keep, text_weight=text_weight)
        progress(0.0, desc=f"loading {model_id}")
        llm = POOL.get(model_id)
        logic.check_layer(config, llm)
        try:
            result = compare_on_gpu(llm.model_id, path, question, config, frames, max_new_tokens)
        except gr.Error as err:  # name the upload, not the server's temporary path
            raise gr.Error(str(err.message).replace(path, Path(path).name), print_exception=False) from None
        progress(1.0, desc="drawing")
        grid = viz.retention_grid(result.frames, result.compressed.provenance, timestamps=result.timestamps,
                                  title=logic.grid_title(result))
        chart = viz.cost_chart(result.baseline.stats, result.compressed.stats,
                               labels=("baseline", logic.run_label(config)),
                               title=f"{result.model_id} on {result.device} · {len(result.frames)} frames")
        table = {"headers": logic.METRIC_HEADERS, "data": logic.metrics_rows(result)}
        reason = STARTUP.fallback_reason if llm is STARTUP.llm else None
        return (logic.banner(llm, fallback_reason=reason), logic.shown_text(result.baseline),
                logic.shown_text(result.compressed), grid,
                table, chart, logic.details(result))
    except gr.Error:
        raise
    except Exception as err:  # noqa: BLE001 - every failure is one line in the UI; the app keeps serving
        if not isinstance(err, (ValueError, logic.ModelUnavailable)):
            log.exception("request failed")
        raise gr.Error(logic.one_line(err), print_exception=False) from None


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
    with gr.Blocks(title="stc: unified spatiotemporal token compression") as demo:
        gr.Markdown(
            "# stc — keep 2% of a video's visual tokens\n"
            "Training-free token compression for Video-LLMs (Du et al., *Unified Spatiotemporal Token "
            "Compression for Video-LLMs at Ultra-Low Retention*, CVPR 2026). One Run answers your question "
            "twice on the same model: with every visual token, and with the tokens stc keeps."
        )
        banner = gr.Markdown(logic.banner(llm, fallback_reason=STARTUP.fallback_reason), elem_id="banner")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="video", sources=["upload"], elem_id="video")
                question = gr.Textbox(label="question", placeholder="What happens in this video?", lines=2,
                                      elem_id="question")
                model = gr.Dropdown(logic.model_choices(llm.model_id, STARTUP.requested), value=llm.model_id,
                                    label="model", elem_id="model")
                retention = gr.Slider(*logic.RETENTION_PERCENT[:2], value=logic.RETENTION_PERCENT[2], step=0.5,
                                      label="retention (% of visual tokens entering the LLM)", elem_id="retention")
                frames = gr.Slider(*logic.FRAMES[:2], value=logic.FRAMES[2], step=4, label="frames sampled",
                                   elem_id="frames")
                with gr.Accordion("advanced", open=False):
                    method = gr.Dropdown(methods, value="stc" if "stc" in methods else methods[0], label="method")
                    tau = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="τ — similarity threshold of unified selection")
                    cluster_ratio = gr.Slider(0.0, 0.95, value=0.3, step=0.05, label="cluster ratio — budget share of refilled clusters")
                    knn_k = gr.Slider(1, 32, value=7, step=1, label="k — neighbours of the DPC-kNN density")
                    inner_layer = gr.Number(value=None, precision=0, minimum=0,
                                            label="K — decoder layer of stage 2 (empty: 18/28 of the depth)")
                    inner_keep = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="R — share of visual tokens kept at layer K (1 = off)")
                    text_weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="λ — weight of text similarity vs attention")
                    max_new_tokens = gr.Slider(*logic.MAX_NEW_TOKENS[:2], value=logic.MAX_NEW_TOKENS[2], step=8,
                                               label="max new tokens")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                with gr.Row():
                    baseline_answer = gr.Textbox(label="baseline — all visual tokens", lines=6, elem_id="baseline-answer")
                    compressed_answer = gr.Textbox(label="compressed — stc", lines=6, elem_id="compressed-answer")
                summary = gr.Markdown(elem_id="summary")
                table = gr.Dataframe(headers=logic.METRIC_HEADERS, label="costs", wrap=True, elem_id="metrics",
                                     column_widths=["36%", "18%", "24%", "22%"], max_height=800)
        gr.Markdown("### Token retention — every sampled frame, every patch")
        grid = gr.Image(show_label=False, type="pil", format="png", elem_id="grid")
        gr.Markdown(
            "A patch outlined in green is kept as itself; a tinted patch was merged into a refilled token "
            "(one colour per cluster); white hatching marks tokens merged away at layer K; dark patches were "
            "dropped. The count under each frame is the tokens it sends to the LLM — a red frame sends none."
        )
        gr.Markdown("### Baseline vs compressed")
        chart = gr.Image(show_label=False, type="pil", format="png", elem_id="chart")

        inputs = [video, question, model, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
                  inner_keep, text_weight, max_new_tokens]
        outputs = [banner, baseline_answer, compressed_answer, grid, table, chart, summary]
        run_button.click(run, inputs, outputs, api_name="run").success(
            compressed_label, [method, retention], compressed_answer, api_visibility="private")
        method.change(knob_states, method, [tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight],
                      api_visibility="private")
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
            "runs once per video and is shared by both runs; time to first token counts it for both."
        )
    # One request at a time by default (the model and its feature cache are shared); others queue.
    demo.queue(default_concurrency_limit=max(1, ARGS.concurrency), max_size=32)
    return demo


demo = build_demo()


def launch(blocks: gr.Blocks | None = None, **kwargs):
    """Launch ``blocks`` (default: the module's demo) with the app's settings; keyword arguments
    override them (tests pass a loopback address and a free port)."""
    settings = dict(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share or None,
                    max_file_size="200mb", allowed_paths=[str(HERE / "examples")])
    settings.update(kwargs)
    return (blocks or demo).launch(**settings)


if __name__ == "__main__":
    launch()
