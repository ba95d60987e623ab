"""stc demo: one question about one video, answered with all visual tokens and with stc, with
every method side by side, or at one token budget: stc on many frames, the baseline on the few the
budget buys ("same cost, more frames").

    python app.py                      # default model (see stc/demo/loading.py), http://127.0.0.1:7860
    python app.py --model tiny-random/llava-onevision
    python app.py --share              # a temporary public link
    python app.py --max-video-seconds 600 --queue-size 8     # limits (see --help, README "Limits")

UI wiring only; the logic lives in the stc.demo package (models, requests, the comparison
runner, what the page shows, ZeroGPU budgets) and stc/viz.py (the retention grid and the cost
chart). Importing this module loads nothing: `create_app(argv)` reads the flags, loads the
default model and builds the page; `python app.py` (what a Space runs) calls it, then launches.

ZeroGPU, explicitly: `spaces` is imported before anything initialises CUDA (first line below);
the model is loaded and placed on the device in `create_app`, before `launch`, which is when
ZeroGPU packs the weights; and all GPU work of a click runs in ONE `@spaces.GPU` function,
`compare_on_gpu`, defined at module level, in a forked worker, with picklable arguments and
results, for a duration computed from the request (`stc.demo.gpu_seconds`); the "same cost, more
frames" tab's click is likewise one call, `long_on_gpu` (`stc.demo.long_gpu_seconds`).

A request is checked before any GPU time is spent: its controls, that its video is an upload
(or an example) and nothing else on the server, and the video's header against the duration and
frame-size limits. Every failure reaches the visitor as one line (`gr.Error`), notes as
`gr.Warning`, and the app keeps serving. The raw values of every event are checked before Gradio
reads them (`Demo.preprocess_data`): a bad value gets the app's line, never a server path or an
object's repr, and a link is never fetched. One visitor may have `max_waiting_per_client`
requests waiting (`FairQueue`); a request whose visitor went away stops (`client_gone`).
"""

import spaces  # noqa: I001 - first: on ZeroGPU it patches torch before anything initialises CUDA

import argparse
import logging
import math
import sys
from pathlib import Path

import gradio as gr
from fastapi import HTTPException
from gradio import queueing, route_utils
from gradio.context import LocalContext
from gradio.utils import get_upload_folder
from gradio_client.utils import is_http_url_like

from stc import OutOfMemory, STCConfig, get_method
from stc import demo as logic
from stc.eval import build_prompt
from stc.toy.data import DEMO_SEEDS as TOY_DEMO_SEEDS
from stc.toy.data import OPTIONS as TOY_OPTIONS
from stc.toy.data import QUESTIONS as TOY_QUESTIONS
from stc.video import probe
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
        ("max_waiting_per_client", "requests one visitor (one address) may have waiting"),
        ("max_upload_mb", "largest upload in MB (MiB)"),
        ("max_video_seconds", "longest video in seconds (read from its header, before decoding)"),
        ("max_video_side", "largest frame side in pixels"),
        ("max_generate_seconds", "each answer stops generating after this many seconds"),
        ("max_decode_seconds", "decoding a request's frames is refused after this many seconds"),
        ("cache_max_age", "uploads and outputs are deleted from disk after this many seconds"),
    ]:
        kind = int if isinstance(getattr(limits, name), int) else float
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{help_text} (default: ${logic.Limits.ENV[name]}, else {getattr(limits, name):g})")
    return parser.parse_args(argv)


# The app's state, set by `create_app` (None until then): its flags and limits, the model pool,
# the model loaded at start, and the models a visitor may pick (nothing else is ever loaded on a
# request).
ARGS: argparse.Namespace | None = None
LIMITS: logic.Limits | None = None
POOL: logic.ModelPool | None = None
STARTUP: logic.Loaded | None = None
MODEL_CHOICES: list[tuple[str, str]] = []
MODEL_IDS: list[str] = []
demo: gr.Blocks | None = None

# Examples: short clips shipped in examples/ (sources and licence in examples/README.md).
TOY_EXAMPLES = tuple(TOY_DEMO_SEEDS)  # the question types the toy learnt (toy/llava-onevision/README.md)


def toy_question(kind: str) -> str:
    """The prompt of one synthetic question type: what `stc.eval` asks and the toy was trained on."""
    return build_prompt(TOY_QUESTIONS[kind], TOY_OPTIONS[kind], "videomme")


EXAMPLES_DIR = HERE / "examples"
# The synthetic clips (stc.toy.data) come first, asked exactly as the toy model was trained to
# read them (question, options, "answer with the letter"): the model it falls back to offline
# answers those for real.
EXAMPLES = [
    *([f"examples/toy_{kind}.mp4", toy_question(kind)] for kind in TOY_EXAMPLES),
    ["examples/earth_at_night.mp4", "Which parts of the Earth are lit up as it turns?"],
    ["examples/thanks_for_watching.mp4", "What text appears on the screen, and in which colour?"],
    ["examples/earth_rotation.mp4", "What is shown in this video, and how does it move?"],
]
# What the examples list shows: the synthetic prompts start with the multiple-choice
# instruction, so they are named by their question.
EXAMPLE_LABELS = [f"synthetic clip (toy model): {TOY_QUESTIONS[kind]}" for kind in TOY_EXAMPLES] + [
    f"{Path(clip).stem.replace('_', ' ')}: {q}" for clip, q in EXAMPLES[len(TOY_EXAMPLES):]]

KNOBS = logic.KNOBS

COST_WIDTHS = ["12%", "15%", "8%", "9%", "9%", "8%", "10%", "8%", "8%", "6%", "7%"]

GRID_LEGEND = (
    "A patch outlined in green is kept as itself; a thin coloured line surrounds the patches merged into "
    "one refilled token (one colour per cluster); white hatching marks tokens merged away at layer K; dimmed "
    "patches were dropped. The count under each frame is the tokens it sends to the LLM — a red frame sends none."
)


def video_dirs() -> list[Path | str]:
    """Where a request's video may come from: Gradio's upload folder (uploads, and the copies of
    the examples it serves) and the examples folder. Read per request ($GRADIO_TEMP_DIR)."""
    return [get_upload_folder(), EXAMPLES_DIR]


# --------------------------------------------------------------------------------------------
# Guards around Gradio's own request handling (gradio is pinned; these use its queue and its
# preprocessing step): raw values are checked before Gradio reads them, one visitor cannot fill
# the queue, and a request whose visitor went away stops.
# --------------------------------------------------------------------------------------------


def client_address(request) -> str:
    """Who sent a request: on a Space (behind its proxy) the rightmost public X-Forwarded-For
    address, the one the proxy wrote (`stc.demo.visitor_address` says why); elsewhere the
    connecting address."""
    peer = request.client.host if request.client else None
    if logic.on_space():
        return logic.visitor_address(request.headers.getlist("x-forwarded-for"), peer)
    return peer or "unknown"


class FairQueue(queueing.Queue):
    """Gradio's queue that refuses a visitor more than `Limits.max_waiting_per_client` waiting
    requests (HTTP 429, one line) and tells a running request whether its visitor is still
    there. Gradio itself drops the waiting requests of a visitor whose connection closed."""

    async def push(self, body, request, username):
        if body.fn_index is not None:
            try:
                route_utils.get_fn(self.blocks, None, body)
            except KeyError:  # Gradio's own answer: a bare HTTP 500
                raise HTTPException(status_code=400, detail=(
                    f"this app has no function {logic.shown(body.fn_index)} (fn_index); its API page lists "
                    "the ones it has")) from None
        if self.max_size is not None and len(self) >= self.max_size:
            return await super().push(body, request, username)  # a full queue: Gradio's own "busy" answer
        address = client_address(request)
        waiting = sum(client_address(event.request) == address
                      for events in self.event_queue_per_concurrency_id.values() for event in events.queue)
        if waiting >= LIMITS.max_waiting_per_client:
            raise HTTPException(status_code=429, detail=(
                f"you already have {waiting} request{'s' * (waiting != 1)} waiting; this app queues at most "
                f"{LIMITS.max_waiting_per_client} per visitor: wait for them to finish"))
        return await super().push(body, request, username)

    def gone(self, event_id: str) -> bool:
        """Whether the running request ``event_id`` lost its visitor (Gradio marks it not alive)."""
        for job in self.active_jobs:
            for event in job or ():
                if event._id == event_id:
                    return not event.alive
        return False


def client_gone():
    """Inside a queued request: a function telling whether its visitor went away; None elsewhere
    and on ZeroGPU (the GPU work runs in another process, bounded by its slot instead)."""
    event_id = LocalContext.event_id.get(None)
    queue = getattr(LocalContext.blocks.get(None), "_queue", None)
    if event_id is None or not isinstance(queue, FairQueue) or logic.on_zero_gpu():
        return None
    return lambda: queue.gone(event_id)


_shown = logic.shown  # one rule for echoing a value in every message


def input_problem(component, value, name: str) -> str | None:
    """What is wrong with one raw value sent for ``component`` (None: nothing), in the app's
    words: Gradio's own checks would answer with the server's paths or its objects' reprs."""
    if isinstance(component, gr.Video):
        if value is None:
            return None
        path = value.get("path") if isinstance(value, dict) else None
        if not isinstance(path, str) or not path.strip() or value.get("meta") != {"_type": "gradio.FileData"}:
            return f"the {name} must be a file uploaded to this app (its FileData, as the upload returned it)"
        if is_http_url_like(path) or "://" in path:
            return f"the {name} must be uploaded: this app does not fetch videos from links"
        try:
            logic.check_video_path(path, [get_upload_folder()])
        except ValueError as err:
            return str(err)
    elif isinstance(component, (gr.Slider, gr.Number)):
        lo, hi = component.minimum, component.maximum
        if value is None and isinstance(component, gr.Number):
            return None
        bounds = f"in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else (
            f"at least {lo:g}" if lo is not None else f"at most {hi:g}" if hi is not None else "finite")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number{' ' if bounds.startswith('in') else ', '}{bounds}, got {_shown(value)}"
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"{name} must be {bounds}, got {_shown(value)}"
    elif isinstance(component, gr.Textbox):
        if value is not None and not isinstance(value, str):
            return f"the {name} must be text, got {_shown(value)}"
    elif isinstance(component, (gr.Dropdown, gr.CheckboxGroup, gr.Radio)):
        offered = [choice[1] if isinstance(choice, tuple) else choice for choice in component.choices]
        many = isinstance(component, gr.CheckboxGroup)
        if many and not isinstance(value, list):
            return f"{name} must be a list of: {', '.join(map(str, offered))}"
        for item in value if many else [value]:
            if isinstance(item, (list, dict)) or item not in offered:
                return f"unknown {name} {_shown(item)}; pick one of: {', '.join(map(str, offered))}"
    return None


class Demo(gr.Blocks):
    """The app's Blocks: Gradio's, with the guards above. ``input_names`` names the controls
    in messages (default: their labels)."""

    input_names: dict = {}

    def queue(self, *args, **kwargs):
        super().queue(*args, **kwargs)
        self._queue.__class__ = FairQueue
        return self

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"this request needs {len(block_fn.inputs)} values, got {len(inputs)}",
                           print_exception=False)
        for component, value in zip(block_fn.inputs, inputs):
            name = self.input_names.get(component._id) or str(getattr(component, "label", "") or "value")
            problem = input_problem(component, value, name)
            if problem:
                raise gr.Error(logic.one_line(problem), print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as err:
            raise gr.Error(logic.hide_folders(logic.one_line(str(err.message))), print_exception=False) from None
        except Exception:  # noqa: BLE001 - Gradio's other messages show paths and reprs: logged, not shown
            log.exception("could not read a request's values")
            raise gr.Error("this request's values could not be read", print_exception=False) from None


def _gpu_error(err: Exception) -> gr.Error:
    """An exception inside a GPU worker as one line for the visitor (the log keeps the rest)."""
    if isinstance(err, OutOfMemory):
        log.warning("out of memory: %s", err)
    elif isinstance(err, logic.Cancelled):
        log.info("%s", err)
    elif not isinstance(err, ValueError):
        log.exception("GPU work failed")
    return gr.Error(logic.one_line(err), print_exception=False)


@spaces.GPU(duration=logic.gpu_seconds)
def compare_on_gpu(model_id: str, video: str, question: str, configs: tuple[STCConfig, ...], num_frames: int,
                   max_new_tokens: int, max_seconds: float | None = None,
                   max_decode_seconds: float | None = None) -> logic.Comparison:
    """Every run of one click on the GPU (a forked worker on ZeroGPU), in one slot whose duration
    grows with frames, new tokens and runs: strings and frozen configs in, a `Comparison` of numpy
    arrays and dataclasses out. The video is decoded (within ``max_decode_seconds``) and encoded
    once; a visitor who leaves stops it while it decodes, encodes or generates."""
    progress = gr.Progress()
    try:
        llm = POOL.get(model_id)
        return logic.run_comparison(llm, video, question, configs, num_frames=num_frames,
                                    max_new_tokens=max_new_tokens, max_seconds=max_seconds,
                                    progress=lambda fraction, desc: progress(fraction, desc=desc),
                                    should_stop=client_gone(), max_decode_seconds=max_decode_seconds)
    except Exception as err:  # noqa: BLE001 - the worker reports one line, the server log the rest
        raise _gpu_error(err) from None


@spaces.GPU(duration=logic.long_gpu_seconds)
def long_on_gpu(model_id: str, video: str, question: str, max_tokens: int, num_frames: int, max_new_tokens: int,
                max_seconds: float | None = None, max_decode_seconds: float | None = None) -> logic.SameCost:
    """Both answers of "same cost, more frames" in one GPU slot whose duration grows with the
    frames (`stc.demo.long_gpu_seconds`): strings and numbers in, a picklable `SameCost` out."""
    progress = gr.Progress()
    try:
        llm = POOL.get(model_id)
        return logic.run_same_cost(llm, video, question, max_tokens=max_tokens, num_frames=num_frames,
                                   max_new_tokens=max_new_tokens, max_seconds=max_seconds,
                                   progress=lambda fraction, desc: progress(fraction, desc=desc),
                                   should_stop=client_gone(), max_decode_seconds=max_decode_seconds)
    except Exception as err:  # noqa: BLE001 - the worker reports one line, the server log the rest
        raise _gpu_error(err) from None


def _refuse(err: Exception) -> gr.Error:
    """Any failure of a request as one line naming the upload, never the server's folders."""
    message = str(err.message) if isinstance(err, gr.Error) else logic.one_line(err)
    if not isinstance(err, (gr.Error, ValueError, logic.ModelUnavailable, OutOfMemory, logic.Cancelled)):
        log.exception("request failed")
    return gr.Error(logic.hide_folders(message), print_exception=False)


def _compare(video, question, model_id, retention, frames, methods, knobs, max_new_tokens, progress):
    """What both buttons do: check the request before any model or GPU work, load the model if
    needed, run the comparison in one GPU call. Returns (model, Comparison)."""
    path, question, frames, max_new_tokens = logic.check_request(video, question, frames, max_new_tokens)
    shown = Path(path).name
    path = logic.check_video_path(path, video_dirs())
    model_id = logic.check_model(model_id, MODEL_IDS)
    logic.check_video_limits(path, LIMITS)
    configs = tuple(logic.make_config(m, retention, **knobs) for m in methods)
    progress(0.0, desc=f"loading {model_id}")
    llm = POOL.get(model_id)
    for config in configs:
        logic.check_layer(config, llm)
    result = compare_on_gpu(llm.model_id, path, question, configs, frames, max_new_tokens,
                            LIMITS.max_generate_seconds, LIMITS.max_decode_seconds)
    result.video_name = shown
    for note in result.notes:
        gr.Warning(note)
    progress(1.0, desc="drawing")
    return llm, result


def _table(result: logic.Comparison) -> dict:
    return {"headers": logic.COST_HEADERS, "data": logic.cost_rows(result)}


def run(video, question, model_id, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
        inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
    """The Run button: the baseline and one method; both answers, its grid, costs and chart."""
    try:
        knobs = dict(tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k, inner_layer=inner_layer,
                     inner_keep=inner_keep, text_weight=text_weight)
        llm, result = _compare(video, question, model_id, retention, frames, [method], knobs, max_new_tokens,
                               progress)
        (title,) = logic.grid_titles(result)
        grid = viz.retention_grid(result.frames, result.compressed.provenance, timestamps=result.timestamps,
                                  title=title)
        chart = viz.cost_chart(result.baseline.stats, result.compressed.stats, labels=result.labels,
                               title=f"{result.model_id} on {result.device} · {len(result.frames)} frames")
        return (banner_for(llm), logic.shown_text(result.baseline), logic.shown_text(result.compressed), grid,
                _table(result), chart, logic.details(result))
    except Exception as err:  # noqa: BLE001 - every failure is one line in the UI; the app keeps serving
        raise _refuse(err) from None


def run_methods(video, question, model_id, retention, frames, methods, tau, cluster_ratio, knn_k, inner_layer,
                inner_keep, text_weight, max_new_tokens, progress=gr.Progress()):
    """The Compare button: the baseline and every ticked method at one retention, one GPU slot."""
    try:
        knobs = dict(tau=tau, cluster_ratio=cluster_ratio, knn_k=knn_k, inner_layer=inner_layer,
                     inner_keep=inner_keep, text_weight=text_weight)
        llm, result = _compare(video, question, model_id, retention, frames, logic.check_methods(methods), knobs,
                               max_new_tokens, progress)
        grids = viz.retention_grids(result.frames, [a.provenance for a in result.runs], timestamps=result.timestamps,
                                    titles=logic.grid_titles(result))
        answers = {"headers": logic.ANSWER_HEADERS, "data": logic.answer_rows(result)}
        return banner_for(llm), answers, _table(result), grids, logic.details(result)
    except Exception as err:  # noqa: BLE001
        raise _refuse(err) from None


def run_long(video, question, model_id, budget, frames, max_new_tokens, progress=gr.Progress()):
    """The "same cost, more frames" button: stc on every frame and the baseline on the frames the
    same budget buys; both answers, their costs, the tokens timeline and page 1 of the grid."""
    try:
        path, question, budget, frames, max_new_tokens = logic.check_long_request(video, question, budget, frames,
                                                                                   max_new_tokens)
        shown = Path(path).name
        path = logic.check_video_path(path, video_dirs())
        model_id = logic.check_model(model_id, MODEL_IDS)
        logic.check_video_limits(path, LIMITS)
        progress(0.0, desc=f"loading {model_id}")
        llm = POOL.get(model_id)
        logic.check_long_frames(llm, frames)
        result = long_on_gpu(llm.model_id, path, question, budget, frames, max_new_tokens, LIMITS.max_generate_seconds,
                             LIMITS.max_decode_seconds)
        result.video_name = shown
        for note in result.notes:
            gr.Warning(note)
        progress(1.0, desc="drawing")
        strip = viz.tokens_timeline(result.stc.provenance, marks=result.baseline_index, timestamps=result.timestamps,
                                    title=logic.timeline_title(result),
                                    marks_label=f"the {len(result.baseline_index)} frames the baseline sees")
        grid, _ = _long_page(result, 1)
        return (banner_for(llm), logic.shown_text(result.baseline), logic.shown_text(result.stc), _table(result),
                strip, grid, result, logic.same_cost_details(result))
    except Exception as err:  # noqa: BLE001
        raise _refuse(err) from None


def _long_page(result: logic.SameCost, page, clusters: str = viz.CLUSTER_MODES[0]) -> tuple:
    """(page ``page`` of stc's retention grid, the number of pages), `PER_PAGE` frames a page;
    ``clusters``: how refilled patches are marked (`viz.CLUSTER_MODES`)."""
    provenance = result.stc.provenance
    ranges = viz.page_ranges(len(result.frames), logic.PER_PAGE, provenance.frames_per_slot)
    page = logic.check_page(page, len(ranges))
    title = logic.page_title(result, page, len(ranges), *ranges[page - 1])
    return viz.retention_page(result.frames, provenance, page - 1, per_page=logic.PER_PAGE,
                              timestamps=result.timestamps, title=title, clusters=clusters), len(ranges)


def long_controls(result):
    """After a "same cost" run: name each answer after the frames and tokens it read, and set
    the page control to the result's pages (its first page is shown)."""
    if not isinstance(result, logic.SameCost):
        return gr.update(), gr.update(), gr.update()
    pages = len(viz.page_ranges(len(result.frames), logic.PER_PAGE, result.stc.provenance.frames_per_slot))
    baseline_label, stc_label = result.labels
    return (gr.Textbox(label=baseline_label), gr.Textbox(label=stc_label),
            gr.Slider(value=1, maximum=pages, interactive=pages > 1))


def show_long_page(result, page, clusters=viz.CLUSTER_MODES[0]):
    """Another page of the last "same cost" result's grid (or the same one with refilled patches
    marked another way), drawn again without running the model."""
    try:
        if not isinstance(result, logic.SameCost):
            raise ValueError("run “same cost, more frames” first")
        return _long_page(result, page, clusters)[0]
    except Exception as err:  # noqa: BLE001
        raise _refuse(err) from None


def redraw_long_grid(result, page, clusters):
    """The cluster toggle (and after a run, which draws the default marks): the page shown, drawn
    again from the last result with refilled patches marked as chosen; nothing before a run."""
    if not isinstance(result, logic.SameCost):
        return gr.update()
    return show_long_page(result, page, clusters)


def banner_for(llm) -> str:
    reason = STARTUP.fallback_reason if llm is STARTUP.llm else None
    return logic.banner(llm, fallback_reason=reason)


def run_example(video, question):
    """Examples run with the default model and controls (what the Space caches lazily), on as
    many frames as the clip has up to the default (the synthetic clips have 8)."""
    try:
        frames = min(logic.FRAMES[2], max(logic.FRAMES[0], probe(video).frames))
    except (ValueError, TypeError):
        frames = logic.FRAMES[2]
    return run(video, question, STARTUP.llm.model_id, logic.RETENTION_PERCENT[2], frames, "stc",
               *(logic.knob_default(name) for name in KNOBS), logic.MAX_NEW_TOKENS[2])


def gpu_note(model_id, frames, max_new_tokens, methods=None) -> str:
    """On ZeroGPU, before a click: the GPU time it will ask for and whether an anonymous visitor's
    quota covers it (empty elsewhere). ``methods`` None: a Run (one method)."""
    if not logic.on_zero_gpu():
        return ""
    try:
        runs = max(1, len(methods)) if methods is not None else 1
        seconds = logic.gpu_seconds(model_id, "", "", (None,) * runs, int(frames), int(max_new_tokens),
                                    LIMITS.max_generate_seconds)
    except (TypeError, ValueError):
        return ""
    return logic.quota_note(seconds)


def long_gpu_note(model_id, budget, frames, max_new_tokens) -> str:
    """On ZeroGPU, before a "same cost" click: the GPU time it will ask for (empty elsewhere)."""
    if not logic.on_zero_gpu():
        return ""
    try:
        seconds = logic.long_gpu_seconds(model_id, "", "", int(budget), int(frames), int(max_new_tokens),
                                         LIMITS.max_generate_seconds)
    except (TypeError, ValueError):
        return ""
    return logic.quota_note(seconds)


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
    with Demo(title="stc: unified spatiotemporal token compression",
              delete_cache=(max(1, age // 6), age)) as demo:
        gr.Markdown(
            "# stc — keep 2% of a video's visual tokens\n"
            "Training-free token compression for Video-LLMs (Du et al., *Unified Spatiotemporal Token "
            "Compression for Video-LLMs at Ultra-Low Retention*, CVPR 2026). One Run answers your question "
            "twice on the same model: with every visual token, and with the tokens stc keeps. "
            "*Compare methods* runs the baseline and every method you tick on the same model and video; "
            "*same cost, more frames* gives stc hundreds of frames for the tokens a few uncompressed frames cost."
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
                    default = logic.knob_default  # STCConfig's defaults, written once there
                    tau = gr.Slider(0.05, 1.0, value=default("tau"), step=0.05,
                                    label="τ — similarity threshold of unified selection")
                    cluster_ratio = gr.Slider(0.0, 0.95, value=default("cluster_ratio"), step=0.05,
                                              label="cluster ratio — budget share of refilled clusters")
                    knn_k = gr.Slider(1, 32, value=default("knn_k"), step=1, label="k — neighbours of the DPC-kNN density")
                    inner_layer = gr.Number(value=default("inner_layer"), precision=0, minimum=0,
                                            label="K — decoder layer of stage 2 (empty: the method's default)")
                    inner_keep = gr.Slider(0.05, 1.0, value=default("inner_keep"), step=0.05,
                                           label="R — share of visual tokens kept at layer K (1 = off)")
                    text_weight = gr.Slider(0.0, 1.0, value=default("text_weight"), step=0.05,
                                            label="λ — weight of text similarity vs attention")
                    max_new_tokens = gr.Slider(*logic.MAX_NEW_TOKENS[:2], value=logic.MAX_NEW_TOKENS[2], step=8,
                                               label="max new tokens")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
                # On ZeroGPU: what the next click asks for, said before the click.
                run_note = gr.Markdown(gpu_note(llm.model_id, logic.FRAMES[2], logic.MAX_NEW_TOKENS[2]),
                                       elem_id="gpu-note", visible=logic.on_zero_gpu())
            with gr.Column(scale=2):
                with gr.Tabs(selected="single") as tabs:
                    with gr.Tab("baseline vs one method", id="single", elem_id="tab-single"):
                        with gr.Row():
                            baseline_answer = gr.Textbox(label="baseline — all visual tokens", lines=6,
                                                         elem_id="baseline-answer")
                            compressed_answer = gr.Textbox(label="compressed — stc", lines=6,
                                                           elem_id="compressed-answer")
                        summary = gr.Markdown(elem_id="summary")
                        table = gr.Dataframe(headers=logic.COST_HEADERS, label="costs, one row per run", wrap=True,
                                             elem_id="metrics", max_height=800, column_widths=COST_WIDTHS)
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
                        compare_note = gr.Markdown(
                            gpu_note(llm.model_id, logic.FRAMES[2], logic.MAX_NEW_TOKENS[2], logic.COMPARE_DEFAULT),
                            elem_id="compare-gpu-note", visible=logic.on_zero_gpu())
                        compare_summary = gr.Markdown(elem_id="compare-summary")
                        compare_answers = gr.Dataframe(headers=logic.ANSWER_HEADERS, label="answers",
                                                       wrap=True, elem_id="compare-answers",
                                                       column_widths=["22%", "78%"], max_height=600)
                        compare_table = gr.Dataframe(headers=logic.COST_HEADERS, label="costs, one row per run",
                                                     wrap=True, elem_id="compare-metrics", max_height=600,
                                                     column_widths=COST_WIDTHS)
                        gr.Markdown("### Token retention of each method")
                        compare_grids = gr.Image(show_label=False, type="pil", format="png", elem_id="compare-grids")
                        gr.Markdown(GRID_LEGEND)
                    with gr.Tab("same cost, more frames", id="long", elem_id="tab-long"):
                        gr.Markdown("One token budget, spent twice: stc reads many frames and keeps that many "
                                    "tokens; the uncompressed model reads as many uniformly sampled frames as the "
                                    "same budget buys. " + logic.frames_text(logic.long.on_gpu(llm)),
                                    elem_id="long-limits")
                        frames_cap = logic.LONG_FRAMES[1] if logic.long.on_gpu(llm) else logic.CPU_MAX_FRAMES
                        with gr.Row():
                            long_budget = gr.Slider(*logic.BUDGET_TOKENS[:2], value=logic.BUDGET_TOKENS[2], step=4,
                                                    label="token budget (visual tokens entering the LLM, both runs)",
                                                    elem_id="long-budget")
                            long_frames = gr.Slider(logic.LONG_FRAMES[0], frames_cap, step=4,
                                                    value=min(logic.LONG_FRAMES[2], frames_cap),
                                                    label="frames stc reads", elem_id="long-frames")
                        long_button = gr.Button("Same cost, more frames", variant="primary", elem_id="long")
                        long_note = gr.Markdown(
                            long_gpu_note(llm.model_id, logic.BUDGET_TOKENS[2], min(logic.LONG_FRAMES[2], frames_cap),
                                          logic.MAX_NEW_TOKENS[2]),
                            elem_id="long-gpu-note", visible=logic.on_zero_gpu())
                        with gr.Row():
                            long_baseline = gr.Textbox(label="baseline — the frames the budget buys", lines=6,
                                                       elem_id="long-baseline-answer")
                            long_stc = gr.Textbox(label="stc — every frame, the same budget", lines=6,
                                                  elem_id="long-stc-answer")
                        long_summary = gr.Markdown(elem_id="long-summary")
                        long_table = gr.Dataframe(headers=logic.COST_HEADERS, label="costs, one row per run",
                                                  wrap=True, elem_id="long-metrics", column_widths=COST_WIDTHS)
                        gr.Markdown("### Tokens each frame sends to the LLM — every frame")
                        long_timeline = gr.Image(show_label=False, type="pil", format="png", elem_id="long-timeline")
                        gr.Markdown(f"### Token retention, {logic.PER_PAGE} frames a page")
                        with gr.Row():
                            long_page = gr.Slider(1, logic.MAX_PAGES, value=1, step=1, label="page", interactive=False,
                                                  elem_id="long-page", scale=3)
                            long_clusters = gr.Radio(list(viz.CLUSTER_MODES), value=viz.CLUSTER_MODES[0],
                                                     label="refilled clusters", elem_id="long-clusters", scale=1)
                        long_grid = gr.Image(show_label=False, type="pil", format="png", elem_id="long-grid")
                        gr.Markdown(GRID_LEGEND)
                        long_result = gr.State()

        inputs = [video, question, model, retention, frames, method, tau, cluster_ratio, knn_k, inner_layer,
                  inner_keep, text_weight, max_new_tokens]
        # The names messages give the controls (those of the handler's own checks).
        demo.input_names = {c._id: name for c, name in [
            (video, "video"), (question, "question"), (model, "model"), (retention, "retention (%)"),
            (frames, "frames"), (method, "method"), (tau, "τ"), (cluster_ratio, "cluster ratio"), (knn_k, "kNN k"),
            (inner_layer, "K (stage-2 layer)"), (inner_keep, "R"), (text_weight, "λ"),
            (max_new_tokens, "max new tokens"), (compare_methods, "method"), (long_budget, "token budget"),
            (long_frames, "frames"), (long_page, "page"), (long_clusters, "refilled clusters")]}
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
        long_button.click(run_long, [video, question, model, long_budget, long_frames, max_new_tokens],
                          [banner, long_baseline, long_stc, long_table, long_timeline, long_grid, long_result,
                           long_summary], api_name="long", concurrency_id="model").success(
            long_controls, long_result, [long_baseline, long_stc, long_page], api_visibility="private", queue=False
        ).success(redraw_long_grid, [long_result, long_page, long_clusters], long_grid, api_visibility="private")
        # Another page, or other cluster marks: drawn again from the last result, no model run.
        long_page.release(show_long_page, [long_result, long_page, long_clusters], long_grid,
                          api_visibility="private")
        long_clusters.change(redraw_long_grid, [long_result, long_page, long_clusters], long_grid,
                             api_visibility="private")
        method.change(knob_states, method, [tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight],
                      api_visibility="private", queue=False)
        if logic.on_zero_gpu():
            for control in (model, frames, max_new_tokens, compare_methods):
                control.change(gpu_note, [model, frames, max_new_tokens], run_note, api_visibility="private",
                               queue=False)
                control.change(gpu_note, [model, frames, max_new_tokens, compare_methods], compare_note,
                               api_visibility="private", queue=False)
            for control in (model, long_budget, long_frames, max_new_tokens):
                control.change(long_gpu_note, [model, long_budget, long_frames, max_new_tokens], long_note,
                               api_visibility="private", queue=False)
        gr.Examples(
            [[str(HERE / v), q] for v, q in EXAMPLES],
            [video, question],
            outputs,
            fn=run_example,
            example_labels=EXAMPLE_LABELS,
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


def launch(blocks: gr.Blocks | None = None, **kwargs):
    """Launch ``blocks`` (default: the module's demo) with the app's settings; keyword arguments
    override them (tests pass a loopback address and a free port)."""
    # show_error: Gradio's own refusals (a path that is not an upload, a value outside a slider's
    # range) reach the visitor as their one-line message, not a bare "Error".
    settings = dict(server_name=ARGS.host, server_port=ARGS.port, share=ARGS.share or None,
                    max_file_size=int(LIMITS.max_upload_mb * 2**20),
                    allowed_paths=[str(EXAMPLES_DIR / Path(clip).name) for clip, _ in EXAMPLES],
                    show_error=True)
    settings.update(kwargs)
    return (blocks or demo).launch(**settings)


def create_app(argv: list[str] | argparse.Namespace | None = None) -> gr.Blocks:
    """Read the flags (``argv``: a list, parsed; None: no flags), load the default model (the
    offline tiny model when it cannot be had) and build the page; returns it (also `demo`).

    On ZeroGPU this runs before `launch`: the weights placed on the device here are what it packs.
    """
    global ARGS, LIMITS, POOL, STARTUP, MODEL_CHOICES, MODEL_IDS, demo
    ARGS = argv if isinstance(argv, argparse.Namespace) else parse_args(list(argv or []))
    LIMITS = logic.Limits.from_env(**{name: getattr(ARGS, name) for name in logic.Limits.ENV})
    POOL = logic.ModelPool()
    STARTUP = POOL.load_default(ARGS.model)
    # On ZeroGPU only the model loaded now (and the tiny ones) may be picked: see model_choices.
    loaded = [STARTUP.llm.model_id] + ([] if logic.on_zero_gpu() else [STARTUP.requested])
    MODEL_CHOICES = logic.model_choices(*loaded)
    MODEL_IDS = [mid for _, mid in MODEL_CHOICES]
    demo = build_demo()
    return demo


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    create_app(sys.argv[1:] if argv is None else argv)
    launch()


if __name__ == "__main__":
    main()

