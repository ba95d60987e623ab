"""An lmms-eval model named "stc": any method of stc's registry on the paper's benchmarks.

lmms-eval (the toolkit the paper evaluates with) finds external models through the Python
entry-point group "lmms_eval.models"; stc's pyproject declares ``stc = "stc.lmms_plugin:manifests"``,
so once stc is installed beside lmms-eval:

    lmms-eval --model stc \\
        --model_args pretrained=llava-hf/llava-onevision-qwen2-7b-ov-hf,method=stc,retention=0.02 \\
        --tasks videomme --batch_size 1 --output_path runs/lmms

Without the installed entry point (stc used from a source tree), ``python -m stc.lmms_plugin``
takes the same arguments: it registers the model in-process, then runs lmms-eval's CLI.

model_args: pretrained (a checkpoint `stc.load` takes, of any family in `stc.supported_types()`:
e.g. Qwen/Qwen3-VL-8B-Instruct or Qwen/Qwen3.5-9B), method (a name from
`stc.list_methods()`; "none" = uncompressed), retention, max_frames_num (frames per video, 32;
alias max_num_frames), device / dtype ("auto"), stats_path (append one JSON line of visual
tokens, FLOPs and timings per answer; NAME.rankN.jsonl per process under accelerate), and any
other `STCConfig` field (tau, cluster_ratio, knn_k, inner_layer, inner_keep, text_weight).
Decoding is greedy; the task's max_new_tokens and "until" strings apply. A video file that cannot be read is answered with "" (scored wrong), a
warning and, with stats_path, an error line, so one bad file cannot end a benchmark run.

This module imports without lmms-eval (a stand-in base class), so its generation entry point
is tested offline; lmms-eval's own `lmms` base class is used whenever lmms-eval is installed.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np

from .config import STCConfig
from .methods import list_methods
from .video import Video, load_video, sample_indices

MODEL_NAME = "stc"
DEFAULT_PRETRAINED = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
CLASS_PATH = f"{__name__}.STC"

try:  # lmms-eval's base class when it is installed
    from lmms_eval.api.model import lmms as _Base

    HAVE_LMMS_EVAL = True
except ImportError:  # a stand-in with the parts of its interface this model uses
    HAVE_LMMS_EVAL = False

    class _Base:  # type: ignore[no-redef]
        is_simple = True

        def __init__(self) -> None:
            self._rank = 0
            self._world_size = 1
            self.task_dict: dict = {}

        @property
        def rank(self) -> int:
            return self._rank

        @property
        def world_size(self) -> int:
            return self._world_size

        @classmethod
        def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
            args = {}
            for part in filter(None, (p.strip() for p in arg_string.split(","))):
                key, _, value = part.partition("=")
                args[key.strip()] = _arg_value(value.strip())
            extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
            return cls(**args, **extra)


def _arg_value(text: str):
    """lmms-eval's reading of one model_args value: bool, int, float, else the string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.isnumeric():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


_CONFIG_FIELDS = {f.name for f in fields(STCConfig)} - {"method", "retention"}
_STATS_FIELDS = ("visual_tokens", "visual_tokens_stage1", "visual_tokens_stage2", "flops", "flops_baseline",
                 "prefill_seconds", "ttft_seconds")


class UnreadableVideo(ValueError):
    """A request's video file is missing or cannot be decoded."""


class STC(_Base):
    """lmms-eval "simple" model: one stc `VideoLLM`, one answer per request (batch size 1)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str = DEFAULT_PRETRAINED,
        method: str = "stc",
        retention: float = 0.02,
        max_frames_num: int = 32,
        max_num_frames: int | None = None,
        device: str | None = "auto",
        dtype: str = "auto",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
        stats_path: str | None = None,
        **config_fields,
    ) -> None:
        super().__init__()
        unknown = sorted(set(config_fields) - _CONFIG_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown model_args {', '.join(unknown)}; stc takes pretrained, method, retention, max_frames_num, "
                f"device, dtype, stats_path and the STCConfig fields {', '.join(sorted(_CONFIG_FIELDS))}"
            )
        if method not in list_methods():
            raise ValueError(f"unknown method {method!r}; available: {', '.join(list_methods())}")
        self.method = method
        self.config = None if method == "none" else STCConfig(retention=retention, method=method, **config_fields)
        self.num_frames = int(max_num_frames if max_num_frames is not None else max_frames_num)
        if str(batch_size) not in ("1", "auto"):
            warnings.warn(f"stc answers one request at a time; batch_size={batch_size} is ignored", stacklevel=2)
        self.batch_size_per_gpu = 1
        self.stats_path = Path(stats_path) if stats_path else None

        from .models import load

        self.llm = load(str(pretrained), device=_device(device), dtype=dtype)
        self._device = self.llm.device

    @property
    def device(self):
        return self._device

    @property
    def batch_size(self) -> int:
        return 1

    # -- lmms-eval's request types ---------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        """Answer each request; ``request.args`` = (context, gen_kwargs, doc_to_visual, doc_id,
        task, split) and the visual is ``doc_to_visual(self.task_dict[task][split][doc_id])``:
        a list holding one video path, or a list of PIL frames (MVBench's frame folders)."""
        from tqdm.auto import tqdm

        results = []
        for request in tqdm(requests, desc="stc answering", disable=self.rank != 0):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
            visual = doc_to_visual(self.task_dict[task][split][doc_id])
            gen_kwargs = dict(gen_kwargs or {})
            if gen_kwargs.get("do_sample"):
                warnings.warn("stc decodes greedily; do_sample=True is ignored", stacklevel=2)
            try:
                video = self._video(visual)
            except UnreadableVideo as e:  # one bad file must not end a benchmark run
                warnings.warn(f"stc: {task}/{split}/{doc_id}: {e}; answering with an empty string", stacklevel=2)
                results.append("")
                self._write_stats(task, split, doc_id, "", None, error=str(e))
                continue
            answer = self.llm.answer(
                video,
                context,
                config=self.config,
                max_new_tokens=int(gen_kwargs.get("max_new_tokens", 128)),
                num_frames=self.num_frames,
            )
            text = _cut_at(answer.text, gen_kwargs.get("until"))
            results.append(text)
            self._write_stats(task, split, doc_id, text, answer.stats)
        return results

    def loglikelihood(self, requests):
        raise NotImplementedError("the stc model runs generate_until tasks only (the paper's benchmarks are all of that kind)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the stc model does not run multi-round tasks")

    # -- helpers ---------------------------------------------------------------------------
    def _video(self, visual) -> Video:
        if isinstance(visual, (str, os.PathLike)):
            visual = [visual]
        if not visual:
            raise ValueError("stc compresses video tokens: this request has no visual input")
        first = visual[0]
        if isinstance(first, (str, os.PathLike)):
            if len(visual) > 1:
                raise ValueError(f"stc takes one video per question, got {len(visual)} paths")
            try:
                return load_video(first, num_frames=self.num_frames)
            except ValueError as e:
                raise UnreadableVideo(str(e)) from e
        if hasattr(first, "convert"):  # PIL images: the frames of one video
            picked = [visual[i] for i in sample_indices(len(visual), self.num_frames)]
            size = picked[0].size
            frames = [np.asarray(im.convert("RGB").resize(size) if im.size != size else im.convert("RGB")) for im in picked]
            return Video.from_frames(np.stack(frames))
        raise ValueError(f"stc cannot read a visual of type {type(first).__name__} (expected a video path or PIL frames)")

    def _write_stats(self, task, split, doc_id, text, stats, error: str | None = None) -> None:
        if self.stats_path is None:
            return
        record = {
            "task": task,
            "split": split,
            "doc_id": doc_id,
            "method": self.method,
            "retention": None if self.config is None else self.config.retention,
            "output": text,
            "error": error,
        }
        if stats is not None:
            values = stats.as_dict()
            record.update({k: values[k] for k in _STATS_FIELDS})
        path = self.stats_path
        if self.world_size > 1:  # one file per process: ranks never share a file
            path = path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _device(device) -> str:
    """lmms-eval's --device (often "cuda"); under accelerate / torchrun, this process's GPU."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(local_rank)}"
    return "auto" if device in (None, "", "auto") else str(device)


def _cut_at(text: str, until) -> str:
    """The answer up to the first stop string (lmms-eval's "until")."""
    if isinstance(until, str):
        until = [until]
    for stop in until or []:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def manifests():
    """Entry point of the "lmms_eval.models" group: the "stc" model's manifest."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)]


def register() -> None:
    """Register "stc" with lmms-eval in this process (what the entry point does when installed)."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    for manifest in manifests():
        MODEL_REGISTRY_V2.register_manifest(manifest, overwrite=True)


def main() -> None:
    """`python -m stc.lmms_plugin ARGS`: lmms-eval's CLI with the "stc" model registered."""
    if not HAVE_LMMS_EVAL:
        raise SystemExit("lmms-eval is not installed: pip install 'stc[eval]' (see docs/eval.md)")
    register()
    from lmms_eval.cli.dispatch import main as lmms_eval_main

    lmms_eval_main()


if __name__ == "__main__":
    sys.argv[0] = "lmms-eval"
    main()
