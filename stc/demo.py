"""The demo's logic, without any UI: which model runs, one baseline-vs-compressed comparison, and
what the app shows of it. `app.py` wires these functions to Gradio and ZeroGPU.

Which model: the real default checkpoint (LLaVA-OneVision, the paper's model: 7B on a Hugging
Face Space, 0.5B elsewhere), overridden by ``--model`` or ``STC_MODEL``. Reaching the hub is
checked first with one short connection attempt (and not at all under ``HF_HUB_OFFLINE``), so
a machine without network falls back in about a second, from the local cache when the
checkpoint is there and otherwise to the offline tiny model, whose answers the banner calls
meaningless. The app never fails to start for want of a model.

One comparison: the video is decoded once, the uncompressed baseline and the compressed run
answer on ONE model instance, and the second run takes the encoded frames from the model's
cache (`VideoLLM.encode`), so the vision encoder runs once. `compare_methods` does the same for
the baseline and several methods at one retention. Everything returned is plain data (numpy
arrays, dataclasses): it crosses a process boundary on ZeroGPU.

Guard rails: `Limits` (upload size, video duration and frame size, generation time, queue),
read from the environment; `check_video_path` (only uploads and the examples are read) and
`check_video_limits` (a header probe, before any decoding) refuse a request in one line.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, ClassVar
from urllib.parse import urlparse

import numpy as np

from .config import STCConfig
from .methods import get_method, list_methods
from .models import Answer, VideoLLM, load
from .models.base import MAX_QUESTION_CHARS, check_question
from .video import Video, VideoInfo, load_video, probe

log = logging.getLogger(__name__)

# The paper's model at two sizes; Qwen2.5-VL as the second family; the offline tiny models.
LLAVA_OV_05B = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
LLAVA_OV_7B = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
QWEN2_5_VL_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
TINY_LLAVA = "tiny-random/llava-onevision"
TINY_QWEN = "tiny-random/qwen2.5-vl"
FALLBACK_MODEL = TINY_LLAVA

# id -> (label, parameters in billions): the sizes let a CPU machine refuse a model it cannot hold.
MODELS: dict[str, tuple[str, float]] = {
    LLAVA_OV_7B: ("LLaVA-OneVision 7B", 8.0),
    LLAVA_OV_05B: ("LLaVA-OneVision 0.5B", 0.9),
    QWEN2_5_VL_7B: ("Qwen2.5-VL 7B", 8.3),
    TINY_LLAVA: ("tiny random LLaVA-OneVision (offline)", 0.0),
    TINY_QWEN: ("tiny random Qwen2.5-VL (offline)", 0.0),
}

RETENTION_PERCENT = (1.0, 50.0, 2.0)  # min, max, default
FRAMES = (8, 64, 32)
MAX_NEW_TOKENS = (8, 512, 128)
# The methods compare mode ticks at first: the paper's own comparison.
COMPARE_DEFAULT = ("stc", "fastv", "visionzip", "fastvid", "holitom")
GPU_SECONDS_MAX = 240  # the longest ZeroGPU slot one click asks for


class ModelUnavailable(RuntimeError):
    """A checkpoint that cannot be loaded here (no hub, not cached, too large for this machine)."""


@dataclass(frozen=True)
class Limits:
    """The app's guard rails; each has an environment variable (and `app.py` a flag).

    max_upload_mb: larger uploads are refused by the server before they are stored.
    max_video_seconds: longer videos (by their header) are refused before any decoding.
    max_video_side: videos whose frames are larger on their longer side are refused.
    max_generate_seconds: each answer stops generating here (and says so).
    concurrency: requests that run at once; queue_size: requests that may wait, beyond
        which a visitor is told the app is busy.
    cache_max_age: seconds after which uploads and drawn outputs are deleted from disk.
    """

    max_upload_mb: float = 200.0
    max_video_seconds: float = 3600.0
    max_video_side: int = 8192
    max_generate_seconds: float = 120.0
    concurrency: int = 1
    queue_size: int = 32
    cache_max_age: int = 3600

    ENV: ClassVar[dict[str, str]] = {
        "max_upload_mb": "STC_MAX_UPLOAD_MB",
        "max_video_seconds": "STC_MAX_VIDEO_SECONDS",
        "max_video_side": "STC_MAX_VIDEO_SIDE",
        "max_generate_seconds": "STC_MAX_GENERATE_SECONDS",
        "concurrency": "STC_CONCURRENCY",
        "queue_size": "STC_QUEUE_SIZE",
        "cache_max_age": "STC_CACHE_MAX_AGE",
    }

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            kind = int if f.type in ("int", int) else float
            try:
                number = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"limit {f.name} must be a positive number, got {value!r}") from None
            if isinstance(value, bool) or not math.isfinite(number) or number <= 0 or (kind is int and number != value):
                raise ValueError(f"limit {f.name} must be a positive {'integer' if kind is int else 'number'}, got {value!r}")
            object.__setattr__(self, f.name, number)

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Limits:
        """Defaults, then the STC_* variables of ``environ`` (default os.environ), then the
        ``overrides`` that are not None. ValueError naming the variable for a bad value."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            variable = cls.ENV[f.name]
            text = (environ.get(variable) or "").strip()
            if text:
                try:
                    values[f.name] = getattr(cls(**{f.name: float(text)}), f.name)
                except ValueError:
                    kind = "integer" if f.type in ("int", int) else "number"
                    raise ValueError(f"{variable} must be a positive {kind}, got {text!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# --------------------------------------------------------------------------------------------
# Where the demo runs.
# --------------------------------------------------------------------------------------------


def on_space() -> bool:
    """True on a Hugging Face Space (which sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def default_model_id(override: str | None = None) -> str:
    """``--model``, else ``STC_MODEL``, else 7B on a Space and 0.5B elsewhere."""
    for value in (override, os.environ.get("STC_MODEL")):
        if value and value.strip():
            return value.strip()
    return LLAVA_OV_7B if on_space() else LLAVA_OV_05B


def model_choices(*extra: str) -> list[tuple[str, str]]:
    """(label, id) pairs for a model picker: the known models plus any ``extra`` ids."""
    choices = [(f"{label} · {mid}", mid) for mid, (label, _) in MODELS.items()]
    for mid in extra:
        if mid and mid not in MODELS:
            choices.insert(0, (mid, mid))
    return choices


def method_choices() -> list[str]:
    """Every registered compression method except the baseline, read from the registry now."""
    return [name for name in list_methods() if name != "none"]


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    Returns (reachable, why not). Offline flags (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) answer
    at once; otherwise one connection to HF_ENDPOINT's host is tried in a daemon thread, so a
    resolver that hangs cannot hold the app's start for longer than ``timeout``.
    """
    if _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    result: list[str] = []

    def attempt():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as err:
            result.append(f"{host} is unreachable ({err.strerror or type(err).__name__})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return False, f"{host} did not answer within {timeout:g} s"
    return not result[0], result[0]


def _cached_snapshot(model_id: str) -> str | None:
    """Local folder of a fully cached hub checkpoint, or None."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model_id, local_files_only=True)
    except Exception:
        return None


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _check_fits(model_id: str) -> None:
    """Refuse a known checkpoint whose float32 weights cannot fit this machine's memory (CPU)."""
    import torch

    params = MODELS.get(model_id, ("", 0.0))[1]
    if not params or torch.cuda.is_available():
        return
    need, have = params * 1e9 * 4, _memory_bytes()
    if have and need > 0.8 * have:
        raise ModelUnavailable(
            f"{model_id} needs about {need / 2**30:.0f} GiB in float32 on CPU; this machine has "
            f"{have / 2**30:.0f} GiB: pick a smaller model or run on a GPU"
        )


def load_model(model_id: str, *, device: str = "auto", hub_timeout: float = 3.0) -> VideoLLM:
    """Load ``model_id`` (hub id, local path or tiny-random/...) without hanging on the network.

    Raises ModelUnavailable (one line) when the checkpoint cannot be had: hub unreachable and
    not cached, unknown id, too large for this machine, or any loading error.
    """
    try:
        if model_id.startswith("tiny-random/") or os.path.isdir(model_id):
            return load(model_id, device=device)
        _check_fits(model_id)
        reachable, why = hub_reachable(hub_timeout)
        source = model_id
        if not reachable:
            source = _cached_snapshot(model_id)
            if source is None:
                raise ModelUnavailable(
                    f"cannot load {model_id}: the Hugging Face hub cannot be reached ({why}) "
                    "and the checkpoint is not in the local cache"
                )
        llm = load(source, device=device)
        llm.model_id = model_id  # the hub id, also when it was loaded from the cache folder
        return llm
    except ModelUnavailable:
        raise
    except Exception as err:  # noqa: BLE001 - any loading failure is reported, never fatal
        raise ModelUnavailable(f"cannot load {model_id}: {one_line(err)}") from err


@dataclass
class Loaded:
    """The model a demo runs on and, when it is the offline fallback, why."""

    llm: VideoLLM
    requested: str
    fallback_reason: str | None = None


class ModelPool:
    """Loaded models by id, least recently used dropped beyond ``capacity`` (the default stays).

    One instance serves the whole app: both runs of a comparison use the same `VideoLLM`.
    """

    def __init__(self, capacity: int | None = None, *, device: str = "auto", loader=load_model):
        self.capacity = max(1, int(capacity or os.environ.get("STC_MAX_MODELS", 2)))
        self.device = device
        self.loader = loader
        self.default: Loaded | None = None
        self._models: OrderedDict[str, VideoLLM] = OrderedDict()
        self._lock = threading.RLock()

    def load_default(self, model_id: str | None = None) -> Loaded:
        """Load the default model, falling back to the offline tiny model; never raises."""
        requested = default_model_id(model_id)
        reason = None
        try:
            llm = self.get(requested)
        except ModelUnavailable as err:
            reason = str(err)
            log.warning("falling back to %s: %s", FALLBACK_MODEL, reason)
            llm = self.get(FALLBACK_MODEL)
        self.default = Loaded(llm, requested, reason)
        return self.default

    def get(self, model_id: str) -> VideoLLM:
        """The loaded model ``model_id``, loading it now if needed (ModelUnavailable if not)."""
        if not isinstance(model_id, str) or not model_id.strip():
            raise ModelUnavailable("no model selected")
        model_id = model_id.strip()
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            llm = self.loader(model_id, device=self.device)
            self._models[model_id] = llm
            keep = self.default.llm.model_id if self.default else None
            for old in list(self._models):
                if len(self._models) <= self.capacity:
                    break
                if old not in (keep, model_id):
                    del self._models[old]
            return llm

    @property
    def loaded(self) -> list[str]:
        return list(self._models)


def device_name(llm: VideoLLM) -> str:
    """'cpu', 'cuda:0 (NVIDIA H100 80GB HBM3)', or 'ZeroGPU (...)' on a ZeroGPU Space."""
    device = str(llm.device)
    if llm.device.type == "cuda":
        try:
            import torch

            device += f" ({torch.cuda.get_device_name(llm.device)})"
        except Exception:  # noqa: BLE001 - a name is decoration only
            pass
    return f"ZeroGPU, {device}" if on_zero_gpu() else device


def banner(llm: VideoLLM, *, fallback_reason: str | None = None) -> str:
    """Markdown: which model runs on which device; a warning when it is the tiny model."""
    text = f"**Model:** `{llm.model_id}` &nbsp;·&nbsp; **device:** {device_name(llm)}"
    if llm.is_tiny:
        text += (
            "\n\n⚠️ **Offline tiny model with random weights: its answers are meaningless.** "
            "Token counts, the retention grid, FLOPs and timings are real for its architecture."
        )
        if fallback_reason:
            text += f"\n\n_The default model could not be loaded: {fallback_reason}._"
    return text


# --------------------------------------------------------------------------------------------
# One request.
# --------------------------------------------------------------------------------------------


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error as one short line (no traceback, no newlines)."""
    text = str(err).strip() if not isinstance(err, str) else err.strip()
    if isinstance(err, BaseException) and not text:
        text = type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FOLDERS = re.compile(r"""(?<![\w.:/])/(?:[^\s/'"`]+/)+(?=[^\s/'"`])""")


def hide_folders(message: str) -> str:
    """``message`` with the folders of absolute paths removed ('/tmp/gradio/ab12/clip.mp4' ->
    'clip.mp4'): a visitor sees the name of their upload, never the server's layout."""
    return _FOLDERS.sub("", message)


def _number(name: str, value, lo: float, hi: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
    return number


def _integer(name: str, value, lo: int, hi: int) -> int:
    number = _number(name, value, lo, hi)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def make_config(
    method: str = "stc",
    retention_percent: float = RETENTION_PERCENT[2],
    *,
    tau: float = 0.7,
    cluster_ratio: float = 0.3,
    knn_k: int = 7,
    inner_layer: int | float | None = None,
    inner_keep: float = 0.5,
    text_weight: float = 0.5,
) -> STCConfig:
    """The `STCConfig` of the app's controls (retention in percent; K None/blank = depth rule).

    Raises ValueError with a one-line message naming the bad control.
    """
    retention = _number("retention (%)", retention_percent, RETENTION_PERCENT[0], RETENTION_PERCENT[1])
    if method not in method_choices():
        raise ValueError(f"unknown method {method!r}; available: {', '.join(method_choices())}")
    layer = None
    if inner_layer not in (None, "") and not (isinstance(inner_layer, float) and math.isnan(inner_layer)):
        layer = _integer("K (stage-2 layer)", inner_layer, 0, 10_000)
    return STCConfig(
        retention=retention / 100.0,
        method=method,
        tau=float(tau),
        cluster_ratio=float(cluster_ratio),
        knn_k=_integer("kNN k", knn_k, 1, 1_000),
        inner_layer=layer,
        inner_keep=float(inner_keep),
        text_weight=float(text_weight),
    )


def check_request(video, question, num_frames, max_new_tokens) -> tuple[str, str, int, int]:
    """Validate what a request carries besides the config; one-line ValueErrors."""
    if isinstance(video, dict):  # a gradio FileData payload
        video = video.get("path") or (video.get("video") or {}).get("path")
    if video is None or (isinstance(video, str) and not video.strip()):
        raise ValueError("upload a video first (or pick an example)")
    path = os.fspath(video)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("type a question about the video")
    question = check_question(question)  # at most MAX_QUESTION_CHARS
    frames = _integer("frames", num_frames, FRAMES[0], FRAMES[1])
    tokens = _integer("max new tokens", max_new_tokens, MAX_NEW_TOKENS[0], MAX_NEW_TOKENS[1])
    return path, question, frames, tokens


def check_methods(methods) -> list[str]:
    """The methods ticked for compare mode, in registry order; one-line ValueErrors."""
    if isinstance(methods, str):
        methods = [methods]
    chosen = list(dict.fromkeys(methods or []))
    if not chosen:
        raise ValueError("tick at least one method to compare")
    available = method_choices()
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; available: {', '.join(available)}")
    return [m for m in available if m in chosen]


def check_model(model_id, offered) -> str:
    """``model_id`` when it is one of the ``offered`` ids (a visitor never loads anything else)."""
    offered = list(offered)
    if not isinstance(model_id, str) or model_id.strip() not in offered:
        raise ValueError(f"unknown model {model_id!r}; pick one of: {', '.join(offered)}")
    return model_id.strip()


def check_video_path(path: str | os.PathLike, allowed_dirs) -> str:
    """The real path of ``path`` if it lies inside one of ``allowed_dirs`` (symlinks and
    ``..`` resolved), else a ValueError: an app reads only its uploads and its examples."""
    real = os.path.realpath(os.fspath(path))
    for folder in allowed_dirs:
        root = os.path.realpath(os.fspath(folder))
        if os.path.commonpath([real, root]) == root and real != root:
            return real
    raise ValueError(f"{Path(path).name} is not an uploaded video: this app reads only uploads and its own examples")


def clock(seconds: float) -> str:
    """A length of video: '1:02:03', '4:05' or '7 s'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def span(seconds: float) -> str:
    """A limit in words: '90 s', '60 min', '2.5 h'."""
    if seconds < 120:
        return f"{round(seconds, 3):g} s"
    if seconds < 7200:
        return f"{round(seconds / 60, 1):g} min"
    return f"{round(seconds / 3600, 1):g} h"


def check_video_limits(path: str | os.PathLike, limits: Limits) -> VideoInfo:
    """Read the header only (`stc.video.probe`) and refuse a video over the duration or frame
    size limit before anything is decoded. Also the one-line ValueErrors of a bad file."""
    info = probe(path)
    if info.duration is not None and info.duration > limits.max_video_seconds:
        raise ValueError(
            f"video is {clock(info.duration)} long; this app takes videos up to {span(limits.max_video_seconds)} "
            "(trim it first)"
        )
    if max(info.width, info.height) > limits.max_video_side:
        raise ValueError(
            f"video frames are {info.width}x{info.height}; this app takes up to {limits.max_video_side} pixels "
            "on the longer side"
        )
    return info


def limits_text(limits: Limits) -> str:
    """The limits as one Markdown paragraph for the page."""
    return (
        f"Limits: videos up to {limits.max_upload_mb:g} MB, {span(limits.max_video_seconds)} long and "
        f"{limits.max_video_side} px on the longer side; questions up to {MAX_QUESTION_CHARS} characters; "
        f"{FRAMES[0]}–{FRAMES[1]} frames; each answer stops after {span(limits.max_generate_seconds)}. "
        f"{limits.concurrency} request{'s' * (limits.concurrency != 1)} run{'s' * (limits.concurrency == 1)} at once "
        f"and {limits.queue_size} can wait; beyond that the app answers that it is busy."
    )


def check_layer(config: STCConfig, llm: VideoLLM) -> None:
    """K must name a decoder layer of this model (when the method works inside the LLM)."""
    if config.inner_layer is None or get_method(config.method).inner is None:
        return
    if config.inner_layer >= llm.num_layers:
        raise ValueError(
            f"K must be in [0, {llm.num_layers - 1}] for {llm.model_id} ({llm.num_layers} decoder layers), "
            f"got {config.inner_layer}"
        )


def gpu_seconds(model_id: str, video: str, question: str, config, num_frames: int, max_new_tokens: int,
                max_seconds: float | None = None) -> int:
    """ZeroGPU budget of one click: one vision pass plus a generation per run, by frames/tokens.

    Called with the GPU function's own arguments: ``config`` is one `STCConfig` (baseline +
    compressed: two runs) or a sequence of them (compare mode: the baseline + one run each).
    Generous for a 7B model on an H200-class slice (vision ~0.1 s/frame, decoding ~30 tok/s)
    plus fixed start-up cost; a generation counts at most ``max_seconds``.
    """
    big = MODELS.get(model_id, ("", 8.0))[1] >= 3 or model_id not in MODELS
    per_frame = 0.6 if big else 0.2
    per_token = 0.08 if big else 0.03
    runs = 1 + (len(config) if isinstance(config, (list, tuple)) else 1)
    generation = per_token * int(max_new_tokens)
    if max_seconds:
        generation = min(generation, float(max_seconds))
    seconds = 20 + per_frame * int(num_frames) + runs * generation
    return int(min(GPU_SECONDS_MAX, math.ceil(seconds)))


# --------------------------------------------------------------------------------------------
# One comparison.
# --------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Baseline and compressed answers to one question about one video (picklable)."""

    model_id: str
    device: str
    is_tiny: bool
    question: str
    baseline: Answer
    compressed: Answer
    frames: np.ndarray  # [T, h, w, 3] uint8 thumbnails of the sampled frames
    timestamps: np.ndarray  # [T] seconds
    note: str | None  # e.g. fewer frames in the file than asked
    seconds: float  # wall time of the whole comparison
    video_name: str = ""  # the file's name, for the text shown with the results

    @property
    def notes(self) -> list[str]:
        """Everything the visitor should know, once each (the video's note, time limits)."""
        return _unique_notes(self.note, self.baseline, self.compressed)


@dataclass
class MethodComparison:
    """The baseline and several methods' answers to one question about one video (picklable).

    runs[i] answers with configs[i]; every run used the same model instance and the same
    encoded frames.
    """

    model_id: str
    device: str
    is_tiny: bool
    question: str
    video_name: str
    baseline: Answer
    runs: list[Answer]
    frames: np.ndarray  # [T, h, w, 3] uint8 thumbnails of the sampled frames
    timestamps: np.ndarray  # [T] seconds
    note: str | None
    seconds: float

    @property
    def notes(self) -> list[str]:
        return _unique_notes(self.note, self.baseline, *self.runs)


def _unique_notes(note: str | None, *answers: Answer) -> list[str]:
    notes = [note] if note else []
    for answer in answers:
        notes.extend(answer.notes)
    return list(dict.fromkeys(notes))


def _video_name(video) -> str:
    if isinstance(video, Video):
        return Path(video.source).name if video.source else "frames in memory"
    return Path(video).name


Progress = Callable[[float, str], None]



def thumbnails(frames: np.ndarray, height: int = 144) -> np.ndarray:
    """[T, height, w, 3] uint8 copies of ``frames`` for drawing (aspect ratio kept)."""
    from PIL import Image

    t, h, w, _ = frames.shape
    if h <= height:
        return np.ascontiguousarray(frames)
    width = max(1, round(w * height / h))
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def _answer_all(llm, video, question, configs, labels, *, num_frames, max_new_tokens, max_seconds, progress):
    """Decode once, then answer with each config (None = baseline) on one model: the first run
    encodes, the others reuse the cached features. Returns (video, its name, answers, start)."""
    report = progress or (lambda _fraction, _desc: None)
    start = time.perf_counter()
    video_name = _video_name(video)
    if not isinstance(video, Video):
        report(0.0, "decoding the video")
        video = load_video(Path(video), num_frames=num_frames)
    total = 1 + 3 * len(labels)
    answers = []
    for i, (label, config) in enumerate(zip(labels, configs)):
        def step(what: str, i=i, label=label) -> None:
            offset = {"encoding video": 1, "preparing prompt": 2, "compressing": 2, "generating": 3}.get(what)
            if offset is not None:
                report((3 * i + offset) / total, f"{label}: {what} — run {i + 1} of {len(labels)}")

        answers.append(llm.answer(video, question, config=config, max_new_tokens=max_new_tokens,
                                  max_seconds=max_seconds, progress=step))
    report(1.0, "done")
    return video, video_name, answers, start


def compare(
    llm: VideoLLM,
    video: Video | str | os.PathLike,
    question: str,
    config: STCConfig,
    *,
    num_frames: int = FRAMES[2],
    max_new_tokens: int = MAX_NEW_TOKENS[2],
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Decode once, answer without and with ``config`` on the same model, encode once.

    ``progress(fraction, description)`` is called at each step (decoding, encoding,
    compressing, each generation); ``max_seconds`` bounds each generation. Errors propagate
    as raised (ValueError for bad input, `stc.OutOfMemory`).
    """
    if not isinstance(config, STCConfig):
        raise ValueError(f"config must be an stc.STCConfig, got {type(config).__name__}")
    video, video_name, (baseline, compressed), start = _answer_all(
        llm, video, question, [None, config], ["baseline", "compressed"], num_frames=num_frames,
        max_new_tokens=max_new_tokens, max_seconds=max_seconds, progress=progress)
    return Comparison(
        model_id=llm.model_id,
        device=device_name(llm),
        is_tiny=llm.is_tiny,
        question=question,
        baseline=baseline,
        compressed=compressed,
        frames=thumbnails(video.frames),
        timestamps=np.asarray(video.timestamps, dtype=np.float64),
        note=video.note,
        seconds=time.perf_counter() - start,
        video_name=video_name,
    )


def compare_methods(
    llm: VideoLLM,
    video: Video | str | os.PathLike,
    question: str,
    configs,
    *,
    num_frames: int = FRAMES[2],
    max_new_tokens: int = MAX_NEW_TOKENS[2],
    max_seconds: float | None = None,
    progress: Progress | None = None,
) -> MethodComparison:
    """The baseline and one run per config on one model: decoded once, encoded once.

    ``configs``: a non-empty sequence of `STCConfig` (typically every method at one
    retention). Progress and errors as in `compare`.
    """
    configs = list(configs)
    if not configs or not all(isinstance(c, STCConfig) for c in configs):
        raise ValueError("configs must be a non-empty sequence of stc.STCConfig")
    video, video_name, answers, start = _answer_all(
        llm, video, question, [None, *configs], ["baseline"] + [run_label(c) for c in configs],
        num_frames=num_frames, max_new_tokens=max_new_tokens, max_seconds=max_seconds, progress=progress)
    return MethodComparison(
        model_id=llm.model_id,
        device=device_name(llm),
        is_tiny=llm.is_tiny,
        question=question,
        video_name=video_name,
        baseline=answers[0],
        runs=answers[1:],
        frames=thumbnails(video.frames),
        timestamps=np.asarray(video.timestamps, dtype=np.float64),
        note=video.note,
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------
# What the app shows of a comparison.
# --------------------------------------------------------------------------------------------

METRIC_HEADERS = ["metric", "baseline", "compressed", "compressed / baseline"]


def _ratio(b: float, c: float) -> str:
    return f"{c / b:.1%}" if b > 0 else "—"


def _speedup(b: float, c: float) -> str:
    if not (b > 0 and c > 0):
        return "—"
    return f"{b / c:.1f}× faster" if b >= c else f"{c / b:.1f}× slower"


def flops_text(value: float) -> str:
    """FLOPs in the paper's unit (T) when large, in G below 0.1 T."""
    return f"{value / 1e12:.3g} T" if value >= 1e11 else f"{value / 1e9:.3g} G"


def metrics_rows(result: Comparison) -> list[list[str]]:
    """Rows of [metric, baseline, compressed, ratio] (display strings)."""
    b, c = result.baseline.stats, result.compressed.stats
    gib = 2**30
    memory = "CUDA max allocated" if c.peak_memory_kind == "cuda_max_allocated" else "process RSS"
    k = f" = {c.inner_layer}" if c.inner_layer is not None else ""
    vision_note = " (cached)" if c.vision_cached else ""
    return [
        ["visual tokens (sampled)", f"{b.visual_tokens:,}", f"{c.visual_tokens:,}", "—"],
        ["visual tokens into the LLM", f"{b.visual_tokens_stage1:,}", f"{c.visual_tokens_stage1:,}",
         _ratio(b.visual_tokens_stage1, c.visual_tokens_stage1)],
        [f"visual tokens after layer K{k}", f"{b.visual_tokens_stage2:,}", f"{c.visual_tokens_stage2:,}",
         _ratio(b.visual_tokens_stage2, c.visual_tokens_stage2)],
        ["LLM FLOPs (paper convention)", flops_text(b.flops), flops_text(c.flops), _ratio(b.flops, c.flops)],
        ["vision encoding (s)", f"{b.vision_seconds:.3f}", f"{c.vision_seconds:.3f}{vision_note}", "—"],
        ["compression (s)", f"{b.compress_seconds:.3f}", f"{c.compress_seconds:.3f}", "—"],
        ["prefill (s)", f"{b.prefill_seconds:.3f}", f"{c.prefill_seconds:.3f}", _speedup(b.prefill_seconds, c.prefill_seconds)],
        ["time to first token (s)", f"{b.ttft_seconds:.3f}", f"{c.ttft_seconds:.3f}", _speedup(b.ttft_seconds, c.ttft_seconds)],
        ["decoding (tokens/s)", f"{b.decode_tokens_per_second:.1f}", f"{c.decode_tokens_per_second:.1f}",
         f"{c.decode_tokens_per_second / b.decode_tokens_per_second:.2f}×" if b.decode_tokens_per_second > 0 else "—"],
        ["new tokens", f"{b.new_tokens}", f"{c.new_tokens}", "—"],
        [f"peak memory (GiB, {memory})", f"{b.peak_memory_bytes / gib:.2f}", f"{c.peak_memory_bytes / gib:.2f}",
         _ratio(b.peak_memory_bytes, c.peak_memory_bytes)],
    ]


def shown_text(answer) -> str:
    """What the UI shows for an answer: an empty reply (the model ended at once) says so."""
    return answer.text or "(empty answer: the model ended its reply at once)"


def run_label(config: STCConfig) -> str:
    """'stc 2%' — the compressed run's name in tables and charts."""
    return f"{config.method} {config.retention * 100:g}%"


def answer_title(answer: Answer, num_frames: int) -> str:
    """'stc 2%: 31 of 1,568 visual tokens enter the LLM, 16 remain after layer 16 · 8 frames'."""
    c = answer.stats
    label = run_label(answer.config) if answer.config is not None else "baseline"
    text = f"{label}: {c.visual_tokens_stage1:,} of {c.visual_tokens:,} visual tokens enter the LLM"
    if c.visual_tokens_stage2 != c.visual_tokens_stage1:
        text += f", {c.visual_tokens_stage2:,} remain after layer {c.inner_layer}"
    return text + f" · {num_frames} frames"


def grid_title(result: Comparison) -> str:
    return answer_title(result.compressed, len(result.frames))


def _request_line(result) -> str:
    question = result.question if len(result.question) <= 160 else result.question[:159] + "…"
    video = f"`{result.video_name}`, " if result.video_name else ""
    return f"{video}{len(result.frames)} frames sampled · “{question}”"


def details(result: Comparison) -> str:
    """Markdown under the answers: what ran, how long, and any note about the video."""
    c = result.compressed.stats
    p = result.compressed.provenance
    zero = int((np.asarray(p.tokens_per_frame) == 0).sum())
    unit = "frames" if p.frames_per_slot == 1 else f"temporal patches of {p.frames_per_slot} frames"
    lines = [
        f"**{run_label(result.compressed.config)}** on `{result.model_id}` ({result.device}): "
        f"{c.visual_tokens_stage1:,} / {c.visual_tokens:,} visual tokens into the LLM "
        f"({c.visual_tokens_stage1 / max(c.visual_tokens, 1):.1%}); {zero} of {len(p.tokens_per_frame)} {unit} "
        f"send no token. Both runs used one model instance; the video was encoded once. "
        f"Total {result.seconds:.1f} s.",
        _request_line(result),
    ]
    lines.extend(f"Note: {note}." for note in result.notes)
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------
# What the app shows of a comparison of several methods.
# --------------------------------------------------------------------------------------------

METHODS_ANSWER_HEADERS = ["run", "answer"]
METHODS_HEADERS = [
    "run", "visual tokens in LLM → after K", "FLOPs", "% of baseline FLOPs", "compression s", "prefill s",
    "prefill vs baseline", "TTFT s", "decode tok/s", "peak mem GiB",
]


def methods_labels(result: MethodComparison) -> list[str]:
    return ["baseline"] + [run_label(a.config) for a in result.runs]


def methods_answer_rows(result: MethodComparison) -> list[list[str]]:
    """[run, answer] for the baseline and every method."""
    answers = [result.baseline, *result.runs]
    return [[label, shown_text(a)] for label, a in zip(methods_labels(result), answers)]


def methods_rows(result: MethodComparison) -> list[list[str]]:
    """One row of costs per run (`METHODS_HEADERS`), the baseline first."""
    b = result.baseline.stats
    rows = []
    for label, answer in zip(methods_labels(result), [result.baseline, *result.runs]):
        c = answer.stats
        tokens = f"{c.visual_tokens_stage1:,}"
        if c.visual_tokens_stage2 != c.visual_tokens_stage1:
            tokens += f" → {c.visual_tokens_stage2:,} (K = {c.inner_layer})"
        rows.append([
            label, tokens, flops_text(c.flops), _ratio(b.flops, c.flops), f"{c.compress_seconds:.3f}",
            f"{c.prefill_seconds:.3f}", "—" if answer is result.baseline else _speedup(b.prefill_seconds, c.prefill_seconds),
            f"{c.ttft_seconds:.3f}", f"{c.decode_tokens_per_second:.1f}", f"{c.peak_memory_bytes / 2**30:.2f}",
        ])
    return rows


def methods_details(result: MethodComparison) -> str:
    """Markdown under the compare table: what ran, on what, and any note."""
    b = result.baseline.stats
    retention = {f"{a.config.retention * 100:g}%" for a in result.runs}
    memory = "CUDA max allocated" if b.peak_memory_kind == "cuda_max_allocated" else "process RSS"
    lines = [
        (f"**{len(result.runs)} method{'s' * (len(result.runs) != 1)} at {', '.join(sorted(retention))} retention** "
         f"and the baseline on `{result.model_id}` ({result.device}). One model instance; the video was decoded "
         f"once and encoded once ({b.vision_seconds:.2f} s, shared by every run; time to first token counts it for "
         f"each). TTFT = time to first token; peak memory is {memory}. Total {result.seconds:.1f} s."),
        _request_line(result),
        "Retention grids, top to bottom: " + ", ".join(methods_labels(result)[1:]) + ".",
    ]
    lines.extend(f"Note: {note}." for note in result.notes)
    return "\n\n".join(lines)
