"""One request, checked before any model or GPU work: the controls' ranges, the app's `Limits`,
the video's path and header, who sent it, and one-line messages that never show the server's
folders.

`check_video_path` reads only uploads and the examples; `check_video_limits` refuses a video by
its header (or its packets, where the header has no duration) before anything is decoded;
`visitor_address` names the visitor a request counts against, from what the Space's proxy
wrote, not what the visitor did.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from ..config import STCConfig
from ..methods import get_method, list_methods
from ..models import VideoLLM
from ..models.family import MAX_QUESTION_CHARS, check_question
from ..video import VideoInfo, probe

RETENTION_PERCENT = (1.0, 50.0, 2.0)  # min, max, default
FRAMES = (8, 64, 32)
MAX_NEW_TOKENS = (8, 512, 128)
# The methods compare mode ticks at first: the paper's own comparison.
COMPARE_DEFAULT = ("stc", "fastv", "visionzip", "fastvid", "holitom")


KNOBS = ("tau", "cluster_ratio", "knn_k", "inner_layer", "inner_keep", "text_weight")


def knob_default(name: str):
    """The default of one of stc's knobs: `STCConfig`'s own, the one place it is written."""
    return STCConfig.__dataclass_fields__[name].default


@dataclass(frozen=True)
class Limits:
    """The app's guard rails; each has an environment variable (and `app.py` a flag).

    max_upload_mb: larger uploads are refused by the server before they are stored.
    max_video_seconds: longer videos (by their header) are refused before any decoding.
    max_video_side: videos whose frames are larger on their longer side are refused.
    max_generate_seconds: each answer stops generating here (and says so).
    max_decode_seconds: decoding a request's frames stops here, refused with one line (the
        request's slot is freed; a visitor who leaves frees it within a fraction of a second).
    concurrency: requests that run at once; queue_size: requests that may wait, beyond
        which a visitor is told the app is busy; max_waiting_per_client: requests one
        visitor (one address) may have waiting, beyond which they are told to wait for them.
    cache_max_age: seconds after which uploads and drawn outputs are deleted from disk.
    """

    max_upload_mb: float = 200.0
    max_video_seconds: float = 3600.0
    max_video_side: int = 8192
    max_generate_seconds: float = 120.0
    # Sized for a 1-hour 1080p clip with a keyframe every 8 s (x264's default) at 64 frames on
    # 2 CPU cores: ~8,000 frames to decode at the 2.5 ms a 1080p frame took there, about 20 s.
    max_decode_seconds: float = 30.0
    concurrency: int = 1
    queue_size: int = 32
    max_waiting_per_client: int = 2
    cache_max_age: int = 3600

    ENV: ClassVar[dict[str, str]] = {
        "max_upload_mb": "STC_MAX_UPLOAD_MB",
        "max_video_seconds": "STC_MAX_VIDEO_SECONDS",
        "max_video_side": "STC_MAX_VIDEO_SIDE",
        "max_generate_seconds": "STC_MAX_GENERATE_SECONDS",
        "max_decode_seconds": "STC_MAX_DECODE_SECONDS",
        "concurrency": "STC_CONCURRENCY",
        "queue_size": "STC_QUEUE_SIZE",
        "max_waiting_per_client": "STC_MAX_WAITING_PER_CLIENT",
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


def method_choices() -> list[str]:
    """Every registered compression method except the baseline, read from the registry now."""
    return [name for name in list_methods() if name != "none"]


_FOLDERS = re.compile(r"""(?<![\w.:/])/(?:[^\s/'"`]+/)+(?=[^\s/'"`])""")


def hide_folders(message: str) -> str:
    """``message`` with the folders of absolute paths removed ('/tmp/gradio/ab12/clip.mp4' ->
    'clip.mp4'): a visitor sees the name of their upload, never the server's layout."""
    return _FOLDERS.sub("", message)


def shown(value, limit: int = 40) -> str:
    """``value`` as a message echoes it: its repr, a long integer in scientific notation
    (Gradio turns 1e300 into a 301-digit int), anything else cut at ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"{value:.3g}" if abs(value) < 10**308 else f"a {len(str(abs(value)))}-digit number"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounds_text(lo: float | None, hi: float | None) -> str:
    """A control's range in words: 'in [1, 50]', 'at least 0', 'at most 9' or 'finite'."""
    if lo is not None and hi is not None:
        return f"in [{lo:g}, {hi:g}]"
    return f"at least {lo:g}" if lo is not None else f"at most {hi:g}" if hi is not None else "finite"


def check_number(name: str, value, lo: float | None = None, hi: float | None = None, *, exact_type: bool = False
                 ) -> float:
    """``value`` as a finite number within [lo, hi] (a missing bound is open), else a one-line
    ValueError naming the control. ``exact_type``: only an int or a float is a number (what an
    API request's raw value must be); otherwise anything ``float`` reads is."""
    bounds = bounds_text(lo, hi)
    number = None
    if not exact_type or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            pass
    if number is None:
        raise ValueError(f"{name} must be a number{' ' if lo is not None and hi is not None else ', '}{bounds}, "
                         f"got {shown(value)}")
    if not math.isfinite(number) or (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ValueError(f"{name} must be {bounds}, got {shown(value)}")
    return number


def whole_number(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (`check_number`, and no fraction); one-line ValueErrors."""
    number = check_number(name, value, lo, hi)
    if number != int(number):
        raise ValueError(f"{name} must be a whole number, got {shown(value)}")
    return int(number)


def check_choice(name: str, value, offered):
    """``value`` when it is one of ``offered``, else a one-line ValueError listing them."""
    offered = list(offered)
    if isinstance(value, (list, dict)) or value not in offered:
        raise ValueError(f"unknown {name} {shown(value)}; pick one of: {', '.join(map(str, offered))}")
    return value


def make_config(
    method: str = "stc",
    retention_percent: float = RETENTION_PERCENT[2],
    *,
    tau: float = knob_default("tau"),
    cluster_ratio: float = knob_default("cluster_ratio"),
    knn_k: int = knob_default("knn_k"),
    inner_layer: int | float | None = knob_default("inner_layer"),
    inner_keep: float = knob_default("inner_keep"),
    text_weight: float = knob_default("text_weight"),
) -> STCConfig:
    """The `STCConfig` of the app's controls (retention in percent; K None/blank = depth rule).

    Raises ValueError with a one-line message naming the bad control.
    """
    retention = check_number("retention (%)", retention_percent, RETENTION_PERCENT[0], RETENTION_PERCENT[1])
    check_choice("method", method, method_choices())
    layer = None
    if inner_layer not in (None, "") and not (isinstance(inner_layer, float) and math.isnan(inner_layer)):
        layer = whole_number("K (stage-2 layer)", inner_layer, 0, 10_000)
    return STCConfig(
        retention=retention / 100.0,
        method=method,
        tau=float(tau),
        cluster_ratio=float(cluster_ratio),
        knn_k=whole_number("kNN k", knn_k, 1, 1_000),
        inner_layer=layer,
        inner_keep=float(inner_keep),
        text_weight=float(text_weight),
    )


def check_upload(video, question) -> tuple[str, str]:
    """(path, question) of what every request carries: a video and a question; one-line
    ValueErrors."""
    if isinstance(video, dict):  # a gradio FileData payload
        video = video.get("path") or (video.get("video") or {}).get("path")
    if video is None or (isinstance(video, str) and not video.strip()):
        raise ValueError("upload a video first (or pick an example)")
    path = os.fspath(video)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("type a question about the video")
    return path, check_question(question)  # at most MAX_QUESTION_CHARS


def check_controls(num_frames, max_new_tokens) -> tuple[int, int]:
    """(frames, new tokens) of a Run or a Compare; one-line ValueErrors."""
    return (whole_number("frames", num_frames, FRAMES[0], FRAMES[1]),
            whole_number("max new tokens", max_new_tokens, MAX_NEW_TOKENS[0], MAX_NEW_TOKENS[1]))


def check_methods(methods) -> list[str]:
    """The methods ticked for compare mode, in registry order; one-line ValueErrors."""
    if isinstance(methods, str):
        methods = [methods]
    chosen = list(dict.fromkeys(methods or []))
    if not chosen:
        raise ValueError("tick at least one method to compare")
    available = method_choices()
    for m in chosen:
        check_choice("method", m, available)
    return [m for m in available if m in chosen]


def check_model(model_id, offered) -> str:
    """``model_id`` when it is one of the ``offered`` ids (a visitor never loads anything else)."""
    if isinstance(model_id, str) and model_id.strip() in offered:
        return model_id.strip()
    return check_choice("model", model_id, offered)  # raises: not offered


def check_video_path(path: str | os.PathLike, allowed_dirs) -> str:
    """The real path of ``path`` if it lies inside one of ``allowed_dirs`` (symlinks and
    ``..`` resolved), else a ValueError: an app reads only its uploads and its examples."""
    path = os.fsdecode(path)
    if "\0" in path:
        raise ValueError("the video's path contains a NUL byte: this app reads only uploads and its own examples")
    real = os.path.realpath(path)
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
    """Read the header (`stc.video.probe`; packets, not frames, where it has no duration) and
    refuse a video over the duration or frame size limit before anything is decoded. Also the
    one-line ValueErrors of a bad file, or of one whose length cannot be measured."""
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
        f"{FRAMES[0]}–{FRAMES[1]} frames, decoded within {span(limits.max_decode_seconds)}; each answer stops after "
        f"{span(limits.max_generate_seconds)}. "
        f"{limits.concurrency} request{'s' * (limits.concurrency != 1)} run{'s' * (limits.concurrency == 1)} at once "
        f"and {limits.queue_size} can wait, at most {limits.max_waiting_per_client} of them from one visitor; "
        "beyond that the app answers that it is busy."
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


# Who a request counts against (`Limits.max_waiting_per_client`). Hugging Face does not document
# what its Spaces proxy does with X-Forwarded-For (searched: huggingface/hub-docs at 242f4a1, the
# Gradio and ZeroGPU docs, their issues; the only visitor header they document is ZeroGPU's
# X-IP-Token, a token, not an address). What every proxy does is one of two things: append the
# address it saw to whatever the visitor sent (AWS ALB's default "append" mode,
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/x-forwarded-headers.html;
# nginx's $proxy_add_x_forwarded_for), or overwrite the header with that address. Either way the
# proxy's entry is the rightmost one (internal hops behind it add private addresses after it),
# and every entry to its left is the visitor's to write. So the visitor is the rightmost public
# address; forged entries before it change nothing.


def visitor_address(forwarded: list[str] | tuple[str, ...], peer: str | None) -> str:
    """The address a Space's visitor is counted by: the rightmost public (globally routable)
    address of the X-Forwarded-For header lines ``forwarded`` (in order, comma-separated
    entries; private, loopback and link-local entries are the platform's own hops and are
    skipped), an IPv6 address as its /64 network (one subscriber's block, whose addresses a
    visitor can rotate at will); ``peer`` (the connecting address) when no entry is public."""
    entries = [entry.strip() for line in forwarded for entry in str(line).split(",")]
    for entry in reversed(entries):
        address = _address(entry)
        if address is not None and address.is_global:
            if address.version == 6:
                return str(ipaddress.ip_network(f"{address}/64", strict=False))
            return str(address)
    return peer or "unknown"


def _address(entry: str):
    """An X-Forwarded-For entry as an IP address (brackets, ports and IPv4-mapped IPv6 undone);
    None when it is not one."""
    text = entry.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address
