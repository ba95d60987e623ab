"""stc demo: one question about one video, answered with all visual tokens and with stc, with
every method side by side, or at one token budget: stc on many frames, the baseline on the few the
budget buys ("same cost, more frames").

    python app.py                      # default model (see stc/demo/loading.py), http://127.0.0.1:7860
    python app.py --model tiny-random/llava-onevision
    python app.py --share              # a temporary public link
    python app.py --max-video-seconds 600 --queue-size 8     # limits (see --help, README "Limits")

The entry point only: the flags become one `stc.demo.app_state.AppState`, which is passed to the
page (`stc.demo.tabs.DemoApp`: one module per tab, one admission path, Gradio's overrides in
`stc.demo.gradio_overrides`); the logic lives in the stc.demo package and stc.viz. Importing
this module loads nothing: `create_app(argv)` reads the flags, loads the default model and builds
the page; `python app.py` (what a Space runs) calls it, then launches.

ZeroGPU, explicitly: `spaces` is imported before anything initialises CUDA (first line below);
the model is loaded into `POOL` and placed on the device in `create_app`, before `launch`, which is
when ZeroGPU packs the weights; and the GPU work of a click runs in one of two `@spaces.GPU`
functions defined here at module level, each in a forked worker that finds the models in `POOL`
as the main process filled it, with picklable arguments and results, for a duration computed from
the request: `compare_on_gpu` (a Run or a Compare, `stc.demo.gpu_seconds`) and `long_on_gpu` (a
"same cost, more frames" click, `stc.demo.long_gpu_seconds`).
"""

import spaces  # noqa: I001 - first: on ZeroGPU it patches torch before anything initialises CUDA

import argparse
import logging
import sys
from pathlib import Path

from stc import STCConfig
from stc import demo as logic
from stc.demo.app_state import AppState, parse_args
from stc.demo.tabs import DemoApp, GpuCalls
from stc.demo.tabs.common import run_in_gpu_call

HERE = Path(__file__).resolve().parent
# The models, by id: empty at import, filled by `create_app` before launch. The one object the
# GPU workers, forked from this process, share with it (their arguments are pickled; the pool
# is not).
POOL = logic.ModelPool()


@spaces.GPU(duration=logic.gpu_seconds)
def compare_on_gpu(model_id: str, video: str, question: str, configs: tuple[STCConfig, ...], num_frames: int,
                   max_new_tokens: int, max_seconds: float | None = None,
                   max_decode_seconds: float | None = None) -> logic.Comparison:
    """Every run of one click on the GPU (a forked worker on ZeroGPU), in one slot whose duration
    grows with frames, new tokens and runs: strings and frozen configs in, a `Comparison` of numpy
    arrays and dataclasses out. The video is decoded (within ``max_decode_seconds``) and encoded
    once; a visitor who leaves stops it while it decodes, encodes or generates."""
    return run_in_gpu_call(POOL, logic.run_comparison, model_id, video, question, configs, num_frames=num_frames,
                  max_new_tokens=max_new_tokens, max_seconds=max_seconds, max_decode_seconds=max_decode_seconds)


@spaces.GPU(duration=logic.long_gpu_seconds)
def long_on_gpu(model_id: str, video: str, question: str, max_tokens: int, num_frames: int, max_new_tokens: int,
                max_seconds: float | None = None, max_decode_seconds: float | None = None) -> logic.SameCost:
    """Both answers of "same cost, more frames" in one GPU slot whose duration grows with the
    frames (`stc.demo.long_gpu_seconds`): strings and numbers in, a picklable `SameCost` out."""
    return run_in_gpu_call(POOL, logic.run_same_cost, model_id, video, question, max_tokens=max_tokens,
                  num_frames=num_frames, max_new_tokens=max_new_tokens, max_seconds=max_seconds,
                  max_decode_seconds=max_decode_seconds)


def create_app(argv: list[str] | argparse.Namespace | None = None) -> DemoApp:
    """Read the flags (``argv``: a list, parsed; None: no flags), load the default model (the
    offline tiny model when it cannot be had) and build the page: the app, its page as ``.demo``.

    On ZeroGPU this runs before `launch`: the weights placed on the device here are what it packs.
    """
    args = argv if isinstance(argv, argparse.Namespace) else parse_args(list(argv or []))
    app = DemoApp(AppState.from_args(args, pool=POOL, root=HERE), GpuCalls(compare_on_gpu, long_on_gpu))
    app.demo = app.build()
    return app


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    create_app(sys.argv[1:] if argv is None else argv).launch()


if __name__ == "__main__":
    main()
