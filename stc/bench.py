"""`python -m stc.bench`: baseline vs compressed runs of one Video-LLM, in one process.

By default the REAL LLaVA-OneVision-0.5B architecture (SigLIP-so400m + Qwen2-0.5B) with random
weights, so it runs offline; ``--model`` takes any id `stc.load` takes (a real checkpoint with
hub access). One model instance, one video, vision features encoded once and shared by every
row; each row is a full `VideoLLM.answer`. Rows: the baseline, then for every retention every
method of ``--methods`` (any name of `stc.list_methods()`). Printed as a Markdown table whose
ratios compare rows of this run only (machines are noisy: never compare absolute times across
runs).

    python -m stc.bench                      # 32 frames, baseline vs stc 10%/5% and 2%/1%
    python -m stc.bench --quick              # 8 frames
    python -m stc.bench --methods stc fastv visionzip fastvid holitom --retention 0.1 0.02
    python -m stc.bench --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import STCConfig
from .methods import get_method, list_methods
from .models import VideoLLM, load
from .models.base import Stats
from .video import load_video

RANDOM_05B = "random-init/llava-onevision-qwen2-0.5b-ov"


def random_llava_onevision_05b(device="auto", dtype="auto") -> VideoLLM:
    """LLaVA-OneVision-0.5B's exact architecture (llava-hf/llava-onevision-qwen2-0.5b-ov-hf
    config sizes) with random weights and the offline tiny tokenizer/processor."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from .models import _resolve_device, _resolve_dtype
    from .models.llava_onevision import LlavaOnevisionAdapter
    from .models.tiny import TINY_LLAVA_ONEVISION, set_generation_ids, tiny_config, tiny_processor

    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)
    config = tiny_config(TINY_LLAVA_ONEVISION)  # token ids that match the offline tokenizer
    v = config.vision_config
    v.hidden_size, v.intermediate_size, v.num_hidden_layers, v.num_attention_heads = 1152, 4304, 26, 16
    t = config.text_config
    t.hidden_size, t.intermediate_size, t.num_hidden_layers = 896, 4864, 24
    t.num_attention_heads, t.num_key_value_heads, t.vocab_size = 14, 2, 152000
    t.head_dim = 64
    t.layer_types = ["full_attention"] * t.num_hidden_layers
    config._name_or_path = RANDOM_05B
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=torch_dtype, attn_implementation="sdpa")
    model.to(dev).eval()
    set_generation_ids(model, TINY_LLAVA_ONEVISION)
    processor = tiny_processor(TINY_LLAVA_ONEVISION)
    return VideoLLM(model, processor, LlavaOnevisionAdapter(model, processor), model_id=RANDOM_05B)


@dataclass
class Row:
    name: str
    stats: Stats


def parse_setting(text: str) -> STCConfig:
    """'2/1' -> stage 1 at 2%, 1% after layer K (inner_keep 0.5); '2' -> stage 2 off."""
    parts = text.split("/")
    try:
        first = float(parts[0]) / 100
        keep = float(parts[1]) / float(parts[0]) if len(parts) > 1 else 1.0
        return STCConfig(retention=first, inner_keep=keep)
    except (ValueError, ZeroDivisionError) as e:
        raise argparse.ArgumentTypeError(f"setting must look like '2/1' or '10', got {text!r}") from e


def parse_retention(text: str) -> float:
    """A retention fraction in (0, 1], e.g. '0.02'."""
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"retention must be a number in (0, 1], got {text!r}") from e
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"retention must be in (0, 1], got {text!r}")
    return value


def parse_method(text: str) -> str:
    if text not in list_methods():
        raise argparse.ArgumentTypeError(f"unknown method {text!r}; available: {', '.join(list_methods())}")
    return text


def row_name(config: STCConfig, llm: VideoLLM) -> str:
    """'stc 10%/5%', 'fastv 2% after K=3', 'visionzip 10%'."""
    method = get_method(config.method)
    r = 100 * config.retention
    if method.retention_inside_llm:
        return f"{config.method} {r:g}% after K={method.layer(config, llm.num_layers)}"
    if method.inner is not None and config.inner_keep < 1:
        return f"{config.method} {r:g}%/{r * config.inner_keep:g}%"
    return f"{config.method} {r:g}%"


def plan_rows(methods: list[str], retentions: list[float], settings: list[STCConfig] | None) -> list[STCConfig]:
    """Configs of the compressed rows: for each retention, each method (``none`` is the baseline
    row, always first and never repeated). ``settings`` (stc's 'A/B' form) replace stc's rows."""
    rows: list[STCConfig] = []
    if settings is not None and "stc" in methods:
        rows += settings
    for retention in retentions:
        for name in methods:
            if name == "none" or (name == "stc" and settings is not None):
                continue
            rows.append(STCConfig(retention=retention, method=name))
    return rows


def default_clip() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gradio")
    if spec is None or spec.origin is None:
        raise SystemExit("no --video given and gradio (which ships sample clips) is not installed")
    return Path(spec.origin).parent / "media_assets" / "videos" / "world.mp4"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def table(rows: list[Row]) -> str:
    base = rows[0].stats
    head = (
        "| run | visual tokens (in LLM -> after K) | FLOPs (T) | FLOPs vs base | compression (s) "
        "| compression / base prefill | prefill (s) | prefill speed-up | TTFT (s) | TTFT speed-up "
        "| decode tok/s | decode vs base | peak mem (GiB) | mem vs base |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        s = r.stats
        tokens = f"{s.visual_tokens_stage1}" + (
            f" -> {s.visual_tokens_stage2}" if s.visual_tokens_stage2 != s.visual_tokens_stage1 else ""
        )
        lines.append(
            f"| {r.name} | {tokens} | {s.flops / 1e12:.3f} | {100 * s.flops / base.flops:.1f}% "
            f"| {s.compress_seconds:.3f} | {100 * s.compress_seconds / base.prefill_seconds:.1f}% "
            f"| {s.prefill_seconds:.3f} | {_ratio(base.prefill_seconds, s.prefill_seconds)} "
            f"| {s.ttft_seconds:.2f} | {_ratio(base.ttft_seconds, s.ttft_seconds)} "
            f"| {s.decode_tokens_per_second:.1f} | {_ratio(s.decode_tokens_per_second, base.decode_tokens_per_second)} "
            f"| {s.peak_memory_bytes / 2**30:.2f} | {_ratio(s.peak_memory_bytes, base.peak_memory_bytes)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stc.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=RANDOM_05B, help=f"model id (default: {RANDOM_05B}, random weights)")
    parser.add_argument("--video", type=Path, default=None, help="video file (default: gradio's world.mp4)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="8 frames")
    parser.add_argument("--methods", nargs="+", type=parse_method, default=["none", "stc"],
                        help=f"methods to compare with the baseline (default: none stc; any of {', '.join(list_methods())})")
    parser.add_argument("--retention", nargs="+", type=parse_retention, default=[0.1, 0.02],
                        help="retentions as fractions, one row per method each (default: 0.1 0.02; stc keeps 50%% "
                             "of them after layer K, fastv counts the tokens after its layer K)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None,
                        help="stc rows as 'A/B' percentages instead of --retention (e.g. 10/5 2/1 2)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    frames = 8 if args.quick else args.frames
    configs = plan_rows(args.methods, args.retention, args.settings)

    llm = random_llava_onevision_05b(args.device, args.dtype) if args.model == RANDOM_05B else load(
        args.model, device=args.device, dtype=args.dtype
    )
    video = load_video(args.video or default_clip(), num_frames=frames)
    question = "Describe what happens in this video."
    print(f"# stc.bench: {llm.model_id} ({llm.adapter.model_type}), {frames} frames, device {llm.device}, "
          f"dtype {str(llm.dtype).replace('torch.', '')}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    # warm-up: encodes the video once (cached for every row) and touches every method's code path
    last_of_each = {config.method: config for config in configs}
    for config in list(last_of_each.values()) or [None]:
        llm.answer(video, question, config=config, max_new_tokens=2)
    rows = [Row("baseline (100%)", llm.answer(video, question, max_new_tokens=args.max_new_tokens).stats)]
    for config in configs:
        stats = llm.answer(video, question, config=config, max_new_tokens=args.max_new_tokens).stats
        rows.append(Row(row_name(config, llm), stats))
    base = rows[0].stats
    print(f"vision encoding (shared by all rows, measured once): {base.vision_seconds:.2f} s; "
          f"visual tokens before compression: {base.visual_tokens}; max_new_tokens {args.max_new_tokens}")
    print(table(rows))


if __name__ == "__main__":
    main()
