"""Which model a demo runs on: the default checkpoint, the hub probe, the offline fallback, and
the pool of loaded models.

The real default checkpoint (LLaVA-OneVision, the paper's model: 7B on a Hugging Face Space,
0.5B elsewhere), overridden by ``--model`` or ``STC_MODEL``. Reaching the hub is checked first with
one short connection attempt (and not at all under ``HF_HUB_OFFLINE``), so a machine without
network falls back in about a second, from the local cache when the checkpoint is there and
otherwise to the offline tiny model, whose answers the banner calls meaningless. The app never
fails to start for want of a model.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..models import VideoLLM, load
from ..messages import one_line

log = logging.getLogger("stc.demo")

# The paper's model at two sizes; Qwen2.5-VL, Qwen3-VL and Qwen3.5 as the other families; the
# offline tiny models.
LLAVA_OV_05B = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
LLAVA_OV_7B = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
QWEN2_5_VL_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN3_VL_2B = "Qwen/Qwen3-VL-2B-Instruct"
QWEN3_VL_8B = "Qwen/Qwen3-VL-8B-Instruct"
TINY_LLAVA = "tiny-random/llava-onevision"
TINY_QWEN = "tiny-random/qwen2.5-vl"
TINY_QWEN3_VL = "tiny-random/qwen3-vl"
TINY_QWEN3_5 = "tiny-random/qwen3.5"
# Loaded at start beside the default on a Space (`also_load_ids`), so that ZeroGPU packs its
# weights at launch and a visitor may pick it: today's family at a size whose clicks cost about
# what the 0.5B's do (~2.1B parameters, 4.3 GB in bf16). It is in the README's preload_from_hub.
SPACE_ALSO_LOAD = (QWEN3_VL_2B,)
# The toy LLaVA-OneVision trained here on synthetic shapes-and-colours clips (`stc.toy`),
# committed in the repository (toy/llava-onevision): it answers such questions for real.
TOY_LLAVA = "toy/llava-onevision"
TOY_PATH = Path(__file__).resolve().parents[2] / TOY_LLAVA


def _fallback() -> str:
    """The offline model a demo falls back to: the toy where the repository has it (a checkout,
    a Space), else the tiny random one (an installed package)."""
    return TOY_LLAVA if (TOY_PATH / "config.json").is_file() else TINY_LLAVA


FALLBACK_MODEL = _fallback()
# Offline models: built or read from disk in seconds, nothing to download.
OFFLINE_MODELS = (TOY_LLAVA, TINY_LLAVA, TINY_QWEN, TINY_QWEN3_VL, TINY_QWEN3_5)

# id -> (label, parameters in billions): the sizes let a CPU machine refuse a model it cannot hold.
MODELS: dict[str, tuple[str, float]] = {
    LLAVA_OV_7B: ("LLaVA-OneVision 7B", 8.0),
    LLAVA_OV_05B: ("LLaVA-OneVision 0.5B", 0.9),
    QWEN2_5_VL_7B: ("Qwen2.5-VL 7B", 8.3),
    QWEN3_VL_2B: ("Qwen3-VL 2B", 2.1),
    QWEN3_VL_8B: ("Qwen3-VL 8B", 8.8),
    **({TOY_LLAVA: ("toy LLaVA-OneVision: synthetic shapes and colours (offline)", 0.0)}
       if FALLBACK_MODEL == TOY_LLAVA else {}),
    TINY_LLAVA: ("tiny random LLaVA-OneVision (offline)", 0.0),
    TINY_QWEN: ("tiny random Qwen2.5-VL (offline)", 0.0),
    TINY_QWEN3_VL: ("tiny random Qwen3-VL (offline)", 0.0),
    TINY_QWEN3_5: ("tiny random Qwen3.5 (offline)", 0.0),
}


class ModelUnavailable(RuntimeError):
    """A checkpoint that cannot be loaded here (no hub, not cached, too large for this machine)."""



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


def also_load_ids(override: str | None = None) -> list[str]:
    """The models loaded at start beside the default: ``--also-load``, else ``STC_ALSO_LOAD``
    (comma-separated ids; empty: none), else `SPACE_ALSO_LOAD` on a Space and none elsewhere."""
    for value in (override, os.environ.get("STC_ALSO_LOAD")):
        if value is not None:
            return [mid.strip() for mid in value.split(",") if mid.strip()]
    return list(SPACE_ALSO_LOAD) if on_space() else []


def model_choices(*extra: str, zero_gpu: bool | None = None) -> list[tuple[str, str]]:
    """(label, id) pairs for a model picker: the known models plus any ``extra`` ids.

    On ZeroGPU (``zero_gpu`` None: detected) only the ``extra`` ids (the models loaded at start,
    whose weights ZeroGPU packed at launch) and the offline models (`OFFLINE_MODELS`) are offered: any other
    checkpoint would be downloaded and placed on the GPU inside a visitor's request, in a worker
    that forgets it afterwards.
    """
    zero_gpu = on_zero_gpu() if zero_gpu is None else zero_gpu
    offered = [mid for mid in MODELS if not zero_gpu or mid in OFFLINE_MODELS]
    ids = list(dict.fromkeys([m for m in extra if m and (m not in MODELS or zero_gpu)] + offered))
    return [(f"{MODELS[mid][0]} · {mid}" if mid in MODELS else mid, mid) for mid in ids]


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
        if model_id == TOY_LLAVA:
            llm = load(str(TOY_PATH), device=device)
            llm.model_id = TOY_LLAVA
            return llm
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
        self.pinned: list[str] = []  # loaded at start beside the default (`load_also`): never dropped
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

    def load_also(self, model_ids) -> list[str]:
        """Load ``model_ids`` beside the default and keep them (on ZeroGPU: packed at launch, so
        they may be offered); one that cannot be loaded is logged and left out, never fatal.
        Returns the ids loaded (each model's own id)."""
        loaded = []
        for mid in model_ids:
            try:
                llm = self.get(mid)
            except ModelUnavailable as err:
                log.warning("not loading %s at start: %s", mid, err)
                continue
            with self._lock:
                if llm.model_id not in self.pinned:  # a second start on the same pool pins nothing twice
                    self.pinned.append(llm.model_id)
                self.capacity = max(self.capacity, len(self.pinned) + 2)  # + the default + one pick
            loaded.append(llm.model_id)
        return loaded

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
            keep = {self.default.llm.model_id} if self.default else set()
            keep |= {*self.pinned, model_id}
            for old in list(self._models):
                if len(self._models) <= self.capacity:
                    break
                if old not in keep:
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
    if llm.model_id == TOY_LLAVA:
        text += (
            "\n\nℹ️ **Offline toy model**: LLaVA-OneVision's architecture (196 tokens per frame), trained on "
            "this machine on synthetic 16-frame clips of coloured shapes. It answers five kinds of question "
            "about them for real — the colour of the small shape, which shape appeared briefly, which way "
            "the ball moves, how many times the red square flashes, which shape came first — so try the "
            "synthetic examples: the answers show where compression keeps or loses the evidence. "
            "It knows nothing else."
        )
    elif llm.is_tiny:
        text += (
            "\n\n⚠️ **Offline tiny model with random weights: its answers are meaningless.** "
            "Token counts, the retention grid, FLOPs and timings are real for its architecture."
        )
    else:
        return text
    if fallback_reason:
        text += f"\n\n_The default model could not be loaded: {fallback_reason}._"
    return text


