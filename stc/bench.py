"""`python -m stc.bench`: baseline vs compressed runs of one Video-LLM, in one process.

By default the REAL LLaVA-OneVision-0.5B architecture (SigLIP-so400m + Qwen2-0.5B) with random
weights, so it runs offline; ``--size`` picks another random-weight size of the same family
(7b, 0.5b, tiny) and ``--model`` takes any id `stc.load` takes (a real checkpoint with hub
access). One model instance, one video, vision features encoded once and shared by every row;
each row is a full `VideoLLM.answer`. Rows: the baseline, then for every retention every method
of ``--methods`` (any name of `stc.list_methods()`). Printed as a Markdown table whose ratios
compare rows of this run only (machines are noisy: never compare absolute times across runs).

``--paper`` is the paper's efficiency measurement (its Table of compression time, prefill, TTFT,
decode speed): LLaVA-OneVision-7B at its true size with random weights, bf16, sdpa, 32 frames,
the baseline, stc 10%/5% and 2%/1% and every other method at 10% and 2%, times in ms. On one
CUDA GPU it is the GPU check (`benchmarks/gpu_check.sh`); ``--device cpu --size tiny`` runs the
same code in seconds.

    python -m stc.bench                      # 32 frames, baseline vs stc 10%/5% and 2%/1%
    python -m stc.bench --quick              # 8 frames
    python -m stc.bench --methods stc fastv visionzip fastvid holitom --retention 0.1 0.02
    python -m stc.bench --device cuda --dtype bfloat16
    python -m stc.bench --paper --device cuda                    # the GPU check, 7B
    python -m stc.bench --paper --device cpu --size tiny --frames 8
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import STCConfig
from .methods import get_method, list_methods
from .models import VideoLLM, load
from .results import Stats
from .video import Video, load_video

# -- random-weight LLaVA-OneVision at the real checkpoints' sizes ------------------------------

RANDOM_05B = "random-init/llava-onevision-qwen2-0.5b-ov"
RANDOM_7B = "random-init/llava-onevision-qwen2-7b-ov"
RANDOM_TINY = "tiny-random/llava-onevision"
RANDOM_IDS = {"7b": RANDOM_7B, "0.5b": RANDOM_05B, "tiny": RANDOM_TINY}

# SigLIP-so400m/14 at 384 px as both checkpoints use it: 27 layers trained, the last one and the
# attention-pooling head dropped (vision_feature_layer -1 of the remaining 26).
_SIGLIP_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16)
# The Qwen2 LLMs as llava-hf/llava-onevision-qwen2-{0.5b,7b}-ov-hf's config.json gives them. The
# vocabularies are Qwen2's (151936 / 152064) plus <image> and <video>, padded to a multiple of
# 64 by transformers' conversion script (convert_llava_onevision_weights_to_hf.py).
_QWEN2 = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, head_dim=64, vocab_size=152000, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, head_dim=128, vocab_size=152128, tie_word_embeddings=False),
}


def llava_onevision_config(size: str):
    """The config of LLaVA-OneVision at ``size`` ("7b", "0.5b" or "tiny"), built offline.

    Every non-size value (token ids matching the offline tokenizer, rope theta 1e6, max positions
    32768, vision_feature_layer -1, strategy "full", anyres_max_9 with the default grid
    pinpoints, 2-layer gelu projector with bias, image_newline) comes from
    `stc.models.tiny.tiny_config`; "7b" and "0.5b" set the real widths and depths: 7b has
    8,030,807,584 parameters, as llava-hf/llava-onevision-qwen2-7b-ov-hf (8.03B).
    """
    from .models.tiny import TINY_LLAVA_ONEVISION, tiny_config

    if size not in RANDOM_IDS:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(RANDOM_IDS)}")
    config = tiny_config(TINY_LLAVA_ONEVISION)
    if size != "tiny":
        for key, value in _SIGLIP_SO400M.items():
            setattr(config.vision_config, key, value)
        text = config.text_config
        for key, value in _QWEN2[size].items():
            setattr(text, key, value)
        text.layer_types = ["full_attention"] * text.num_hidden_layers
        config.tie_word_embeddings = text.tie_word_embeddings
    config._name_or_path = RANDOM_IDS[size]
    return config


def random_llava_onevision(size: str = "0.5b", device="auto", dtype="auto", *, seed: int = 0) -> VideoLLM:
    """LLaVA-OneVision at ``size`` with random weights and the offline tiny tokenizer/processor.

    The weights are created and initialised directly on ``device`` in ``dtype`` (the model's own
    initialisation: a few seconds for 8B parameters on a GPU, nothing goes through host memory),
    under ``torch.manual_seed(seed)`` with the caller's RNG state restored afterwards. Random
    weights never stop early: generation stops only at max_new_tokens, so every row of a
    benchmark decodes the same number of tokens.
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    from .models import _resolve_device, _resolve_dtype
    from .models.llava_onevision import LlavaOnevisionAdapter
    from .models.tiny import TINY_LLAVA_ONEVISION, _zero_mean_patch_filters, set_generation_ids, tiny_processor

    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, dev)
    config = llava_onevision_config(size)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), dev:
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration._from_config(
            config, dtype=torch_dtype, attn_implementation="sdpa"
        )
    _zero_mean_patch_filters(model)  # tokens that differ with content, as trained ones do
    model.eval()
    set_generation_ids(model, TINY_LLAVA_ONEVISION)
    model.generation_config.eos_token_id = None  # see the docstring: fixed-length answers
    processor = tiny_processor(TINY_LLAVA_ONEVISION)
    return VideoLLM(model, processor, LlavaOnevisionAdapter(model, processor), model_id=RANDOM_IDS[size])


# -- rows and tables --------------------------------------------------------------------------


def median_stats(runs: list[Stats]) -> Stats:
    """One Stats per row: the median of every numeric field over ``runs`` (the same row
    answered in several rounds); the rest (flags, names) from the first run."""
    first = runs[0]
    if len(runs) == 1:
        return first
    fields = {}
    for name, value in first.as_dict().items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            med = float(np.median([getattr(r, name) for r in runs]))
            fields[name] = round(med) if isinstance(value, int) else med
        else:
            fields[name] = value
    return Stats(**fields)


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
    """'stc 10%/5%', 'fastv 2% after K=3', 'visionzip 10%', 'flashvid 10%/3%'."""
    method = get_method(config.method)
    r = 100 * config.retention
    if method.stage1 is None and method.inner is not None:  # FastV: the retention counts after layer K
        return f"{config.method} {r:g}% after K={method.layer(config, llm.num_layers)}"
    counts = method.counts(config, 10**6)  # the share layer K keeps, read from the method's own rule
    if method.inner is not None and counts.after_layer < counts.stage1:
        return f"{config.method} {r:g}%/{r * counts.after_layer / counts.stage1:g}%"
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


def synthetic_video(num_frames: int, height: int = 270, width: int = 480) -> Video:
    """A deterministic clip made in memory (textured background, three moving squares), for
    machines without gradio's sample clips: the GPU check needs no file and no download."""
    rng = np.random.default_rng(0)
    background = (rng.random((height // 6, width // 6, 3)) * 255).astype(np.uint8).repeat(6, 0).repeat(6, 1)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = np.roll(background, shift=3 * t, axis=1).copy()
        for i, colour in enumerate(((230, 40, 40), (40, 200, 60), (40, 80, 230))):
            y = (40 + 70 * i + 5 * t) % (height - 60)
            x = (60 + 130 * i + 11 * t * (i + 1)) % (width - 60)
            frame[y : y + 60, x : x + 60] = colour
        frames[t] = frame
    return Video.from_frames(frames, fps=1.0, source="synthetic")


def _factor(a: float, b: float) -> str:
    """a / b as a factor, "1.23x" ("-" when b is not positive)."""
    return f"{a / b:.2f}x" if b > 0 else "-"


def table(rows: list[Row], *, unit: str = "s") -> str:
    """The Markdown table of ``rows`` (rows[0] is the baseline every ratio divides by); times in
    seconds (``unit="s"``) or milliseconds (``unit="ms"``, the paper's)."""
    scale, fmt = {"s": (1.0, ".3f"), "ms": (1e3, ".1f")}[unit]
    base = rows[0].stats
    head = (
        f"| run | visual tokens (in LLM -> after K) | FLOPs (T) | FLOPs vs base | compression ({unit}) "
        f"| compression / base prefill | prefill ({unit}) | prefill speed-up | TTFT ({unit}) | TTFT speed-up "
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
            f"| {s.compress_seconds * scale:{fmt}} | {100 * s.compress_seconds / base.prefill_seconds:.1f}% "
            f"| {s.prefill_seconds * scale:{fmt}} | {_factor(base.prefill_seconds, s.prefill_seconds)} "
            f"| {s.ttft_seconds * scale:{fmt}} | {_factor(base.ttft_seconds, s.ttft_seconds)} "
            f"| {s.decode_tokens_per_second:.1f} | {_factor(s.decode_tokens_per_second, base.decode_tokens_per_second)} "
            f"| {s.peak_memory_bytes / 2**30:.2f} | {_factor(s.peak_memory_bytes, base.peak_memory_bytes)} |"
        )
    return "\n".join(lines)


# The paper's efficiency numbers (one GPU, LLaVA-OneVision-7B, 32 frames, 2%; shared/method.md),
# printed under --paper's table for comparison (its model is trained, ours random: compare
# ratios, and only on a GPU).
PAPER_EFFICIENCY = (
    "paper (LLaVA-OneVision-7B, 32 frames, 2%, one GPU): compression 74.0 ms; prefill 701.2 -> 31.3 ms "
    "(22x); TTFT 1104.7 -> 473.8 ms; decode 27.6 -> 35.7 tok/s; peers' compression: VisionZip 35.8 ms, "
    "FastVID 8.6 ms, HoliTom 88.7 ms; FLOPs 41.4 T -> 1.1 T (2%/1%)"
)


# -- the command ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stc.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true",
                        help="the paper's efficiency table: --size 7b, bf16, every method of stc.list_methods() at "
                             "10%% and 2%% (stc 10%%/5%% and 2%%/1%%), 64 new tokens, times in ms")
    parser.add_argument("--size", choices=list(RANDOM_IDS), default=None,
                        help="random-weight LLaVA-OneVision at this size, offline (default: 0.5b; 7b with --paper)")
    parser.add_argument("--model", default=None, help="model id for stc.load (default: --size's random weights)")
    parser.add_argument("--video", type=Path, default=None,
                        help="video file (default: gradio's world.mp4; with --paper a synthetic clip without gradio)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="8 frames")
    parser.add_argument("--methods", nargs="+", type=parse_method, default=None,
                        help=f"methods to compare with the baseline (default: none stc; all with --paper; any of "
                             f"{', '.join(list_methods())})")
    parser.add_argument("--retention", nargs="+", type=parse_retention, default=[0.1, 0.02],
                        help="retentions as fractions, one row per method each (default: 0.1 0.02; stc keeps 50%% "
                             "of them after layer K, fastv counts the tokens after its layer K)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None,
                        help="stc rows as 'A/B' percentages instead of --retention (e.g. 10/5 2/1 2)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 16; 64 with --paper")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds over every row, interleaved; each column is the median over the rounds "
                             "(default 1; 3 with --paper: on a GPU a row's first answer can decode several times "
                             "slower than the next, docs/gpu/decode-rounds-h200.txt)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="default auto (bf16 on CUDA, fp32 on CPU); bfloat16 with --paper")
    args = parser.parse_args(argv)
    if args.model is not None and args.size is not None:
        parser.error("give --model or --size, not both")
    if args.paper and args.model is not None:
        parser.error("--paper builds LLaVA-OneVision from its config; use --size, not --model")
    started = time.perf_counter()
    frames = 8 if args.quick else args.frames
    methods = args.methods or (list_methods() if args.paper else ["none", "stc"])
    max_new_tokens = args.max_new_tokens or (64 if args.paper else 16)
    dtype = args.dtype or ("bfloat16" if args.paper else "auto")
    size = args.size or ("7b" if args.paper else None)
    repeats = args.repeats or (3 if args.paper else 1)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    configs = plan_rows(methods, args.retention, args.settings)

    sizes = {i: s for s, i in RANDOM_IDS.items() if i.startswith("random-init/")}
    if args.model is None or args.model in sizes:
        llm = random_llava_onevision(size or sizes.get(args.model, "0.5b"), args.device, dtype)
    else:
        llm = load(args.model, device=args.device, dtype=dtype)
    built = time.perf_counter()
    if args.video is not None:
        video = load_video(args.video, num_frames=frames)
    elif args.paper and not _gradio_clip_available():
        video = synthetic_video(frames)
    else:
        video = load_video(default_clip(), num_frames=frames)
    question = "Describe what happens in this video."
    params = sum(p.numel() for p in llm.model.parameters())
    weights = sum(p.numel() * p.element_size() for p in llm.model.parameters())
    print(f"# stc.bench: {llm.model_id} ({llm.adapter.model_type}, {_count(params)} parameters, "
          f"{weights / 2**30:.2f} GiB of weights), {frames} frames of {video.source or 'memory'}, device "
          f"{_device_name(llm.device)}, dtype {str(llm.dtype).replace('torch.', '')}, "
          f"attention {llm.model.config._attn_implementation}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", file=sys.stderr if not args.paper else sys.stdout)
    # warm-up: touches every method's code path (and on a GPU its kernels) once
    last_of_each = {config.method: config for config in configs}
    for config in list(last_of_each.values()) or [None]:
        llm.answer(video, question, config=config, max_new_tokens=2)
    if args.paper or llm.device.type == "cuda":
        # the baseline row encodes again, warm; every later row shares its features (on a GPU the
        # warm-up's encode carries CUDA's first-call costs: 3.9 s for the tiny Qwen3-VL on an H200,
        # docs/gpu/bench-qwen3-vl-tiny-h200.md; on a CPU without --paper the 0.5B's encode is
        # minutes and costs the same cold or warm, so it is kept)
        llm.clear_cache()
    warmed = time.perf_counter()
    runs: list[list[Stats]] = [[] for _ in range(len(configs) + 1)]
    for _ in range(repeats):  # interleaved: every row sees the machine's state of every round
        for i, config in enumerate([None, *configs]):
            runs[i].append(llm.answer(video, question, config=config, max_new_tokens=max_new_tokens).stats)
    rows = [Row("baseline (100%)", median_stats(runs[0]))]
    rows += [Row(row_name(config, llm), median_stats(r)) for config, r in zip(configs, runs[1:])]
    base = rows[0].stats
    unit = "ms" if args.paper else "s"
    vision = base.vision_seconds * (1e3 if args.paper else 1)
    rounds = f"; median of {repeats} interleaved rounds" if repeats > 1 else ""
    print(f"vision encoding (shared by all rows, measured once): {vision:.2f} {unit}; "
          f"visual tokens before compression: {base.visual_tokens}; max_new_tokens {max_new_tokens}{rounds}")
    print(table(rows, unit=unit))
    if args.paper:
        short = [r.name for r in rows if r.stats.new_tokens != max_new_tokens]
        if short:
            print(f"note: fewer than {max_new_tokens} new tokens in: {', '.join(short)}")
        print(f"peak memory: {base.peak_memory_kind} during each answer, weights included")
        print(PAPER_EFFICIENCY)
        done = time.perf_counter()
        print(f"wall time: build {built - started:.1f} s, warm-up {warmed - built:.1f} s, "
              f"measured rows {done - warmed:.1f} s, total {done - started:.1f} s")


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def _gradio_clip_available() -> bool:
    try:
        return default_clip().is_file()
    except SystemExit:
        return False


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda})"
    return str(device)


if __name__ == "__main__":
    main()
