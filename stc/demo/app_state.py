"""What the app holds, built once from its flags: `AppState`.

`app.py` parses the flags (`parse_args`), builds one `AppState` in `create_app` and passes it to
everything that serves a request (the Gradio overrides, the admission path, each tab): its
limits, the model pool, the model loaded at start and the models a visitor may pick (nothing
else is ever loaded on a request). Tests and tools change a limit on the state they were given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .loading import Loaded, ModelPool, also_load_ids, banner, model_choices, on_zero_gpu
from .requests import Limits

_LIMIT_HELP = {
    "concurrency": "requests run at once",
    "queue_size": "requests that may wait; more are told the app is busy",
    "max_waiting_per_client": "requests one visitor (one address) may have waiting",
    "max_upload_mb": "largest upload in MB (MiB)",
    "max_video_seconds": "longest video in seconds (read from its header, before decoding)",
    "max_video_side": "largest frame side in pixels",
    "max_generate_seconds": "each answer stops generating after this many seconds",
    "max_decode_seconds": "decoding a request's frames is refused after this many seconds",
    "cache_max_age": "uploads and outputs are deleted from disk after this many seconds",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The app's flags: the model, where to serve, and every `Limits` field."""
    parser = argparse.ArgumentParser(description="stc demo: baseline vs compressed answers about a video")
    parser.add_argument("--model", help="hub id, local checkpoint or tiny-random/... (default: $STC_MODEL, "
                        "else LLaVA-OneVision: 7B on a Space, 0.5B elsewhere; offline: the tiny model)")
    parser.add_argument("--also-load", default=None, metavar="IDS",
                        help="comma-separated models loaded at start beside --model, offered on ZeroGPU too "
                             "(default: $STC_ALSO_LOAD, else Qwen3-VL 2B on a Space, none elsewhere)")
    parser.add_argument("--share", action="store_true", help="also serve a temporary public gradio.live link")
    parser.add_argument("--host", default=None, help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    limits = Limits()
    for name, help_text in _LIMIT_HELP.items():
        kind = int if isinstance(getattr(limits, name), int) else float
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{help_text} (default: ${Limits.ENV[name]}, else {getattr(limits, name):g})")
    return parser.parse_args(argv)


@dataclass
class AppState:
    """The app's flags and limits, its model pool, the model loaded at start and the models a
    visitor may pick; ``root`` is the folder of app.py (its examples/ live there)."""

    args: argparse.Namespace
    limits: Limits
    pool: ModelPool
    startup: Loaded
    model_choices: list[tuple[str, str]]
    root: Path

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, pool: ModelPool, root: Path) -> AppState:
        """Limits from the flags (over the environment), the default model loaded into ``pool``
        (the offline tiny model when it cannot be had: never raises)."""
        limits = Limits.from_env(**{name: getattr(args, name) for name in Limits.ENV})
        startup = pool.load_default(args.model)
        also = pool.load_also(also_load_ids(getattr(args, "also_load", None)))
        # On ZeroGPU only the models loaded now (and the tiny ones) may be picked: see model_choices.
        loaded = [startup.llm.model_id, *also] + ([] if on_zero_gpu() else [startup.requested])
        return cls(args, limits, pool, startup, model_choices(*loaded), root)

    @property
    def model_ids(self) -> list[str]:
        return [mid for _, mid in self.model_choices]

    @property
    def examples_dir(self) -> Path:
        return self.root / "examples"

    def banner_for(self, llm) -> str:
        """The banner above the answers of ``llm`` (why the fallback runs, for the startup model)."""
        reason = self.startup.fallback_reason if llm is self.startup.llm else None
        return banner(llm, fallback_reason=reason)
