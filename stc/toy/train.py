"""`python -m stc.toy.train`: train the toy LLaVA-OneVision on synthetic shape QA, from a seed.

The model is `LlavaOnevisionForConditionalGeneration` with the real token geometry (SigLIP
384 px / patch 14 -> 27x27 patches -> bilinear 14x14 = 196 tokens per frame, one
`image_newline` per video), the offline tokenizer and the real processor of
`stc.models.tiny`, and small widths (`ARCH`). It is trained the way real Video-LLMs are made,
in two stages, and never on any compression method's output:

  A. The vision tower is pretrained alone on single frames (`pretrain_vision`): from each
     patch's features, linear heads name the kind of shape and the colour of the object drawn
     there (or the background), and a third reads every patch's column and row on the grid
     (``vision_place``, the weight of that term; default 1), so the tower's features say what,
     which colour and where, as an encoder's that knows the objects before the LLM sees any
     question. Without the place term (``--vision-place 0``, the weights before 2026-12-07) a
     linear probe reads a ball patch's column with R^2 0.04, with it 0.76
     (toy/attempts/README.md, tenth session).
  B. The tower is frozen (as LLaVA's recipe freezes it) and the features of a pool of training
     clips are computed once; the projector, the `image_newline` and the LLM learn to answer
     (`train_llm`) by teacher forcing on exactly the prompt `stc.eval` builds (the chat template
     around the video placeholder, the VideoMME-style text with the question and its four
     options), with the loss on the right option's text and `<|im_end|>` (what `stc.eval`'s
     parser reads as that option), in batches (rows of one length together, unpadded), in
     three phases (`PHASES`): 4-frame clips at 7 x 7 tokens a frame until every question type
     is learnt; 16-frame clips at 7 x 7 with clips of at most 6 frames at LLaVA-OneVision's own
     14 x 14; then everything at 14 x 14 on a third pool of 16-frame clips drawn at the scale
     the evaluation draws (objects 1x; the first two pools draw them larger). Visual
     lengths vary as in real Video-LLM training: half the examples are a shorter clip of the
     same scene (1 to T - 1 frames; one frame of a colour clip is a single image) that keeps the
     frames its answer needs (the flash, a frame of each ordered shape) or, for count, says how
     many flashes it kept, so every answer stays true; and 30% of them are the clip's caption
     ("Describe the video.") instead of its question, as LLaVA learns to describe before it
     learns to answer. ``--count-stutter P`` (default 0.5; 0 is the previous recipe) gives a
     whole count clip, with probability P, as a copy that stutters where 0 to n - 1 of its
     flashes were (`stages.stuttered_clip`), so that a full-length clip's count must be
     counted, not recalled from the scene; P = 0.5 won the validation rule
     (toy/attempts/README.md, twelfth and thirteenth sessions).

Training clips come from `stc.toy.data` with seeds drawn from `TRAIN_SEEDS` by the run's seed,
rendered straight to pixels (no mp4: the evaluation goes through mp4 and `load_video`, whose
H.264 at CRF 18 moves a pixel by less than 4 levels on average). Then the checkpoint (model +
processor, `save_pretrained`) is written to OUT, with OUT/loss.csv and OUT/loss.png (both
stages' curves; the plot needs matplotlib, the `toy` extra, which `make install` installs),
OUT/train.json (settings, times) and OUT/accuracy.json (accuracy per type on
held-out seeds, measured by loading OUT with `stc.load` and answering as `stc.eval` does).

    python -m stc.toy.train --out toy/llava-onevision --seed 0    # the committed weights

The same seed and machine give the same weights (torch's CPU kernels are deterministic for one
thread count; ``--threads`` defaults to 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .data import FRAMES, TEST_SEEDS, TYPES, question, write_manifest
from .model import ARCH, DESCRIBE, Prompts, build_toy, patch_labels, pixel_values, toy_config, vision_features
from .stages import (DESCRIBE_SHARE, PHASES, POOLS, Phase, _set_lr, describe, encode_pool, pretrain_vision, shorter_clip,
                     standardize_projector, train_llm, visual_tokens)

# The toy's whole API in one place (the stages and the model's inputs are re-exported from here).
__all__ = ["ARCH", "DESCRIBE", "PHASES", "POOLS", "Phase", "Prompts", "build_toy", "describe", "encode_pool", "evaluate",
           "main", "patch_labels", "pixel_values", "pretrain_vision", "shorter_clip", "standardize_projector",
           "toy_config", "train", "train_llm", "vision_features", "visual_tokens", "_set_lr"]


# -- the whole run -------------------------------------------------------------------------------
def train(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    vision_steps: int = 300,
    vision_lr: float = 3e-3,
    vision_place: float = 1.0,
    count_stutter: float = 0.5,
    phases=PHASES,
    pools=POOLS,
    arch: dict | None = None,
    eval_seeds=TEST_SEEDS,
    quiet: bool = False,
) -> list[dict]:
    """Stage A (``vision_steps``) then stage B (``phases`` over ``pools``) from ``seed``; saves the
    checkpoint and its records to ``out`` and returns both curves (stage A's rows first).
    ``eval_seeds`` empty skips the held-out accuracy."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_toy(seed, arch)
    t0 = time.perf_counter()
    curve_a = pretrain_vision(model, seed=seed, steps=vision_steps, lr=vision_lr, place=vision_place,
                              quiet=quiet) if vision_steps else []
    t1 = time.perf_counter()
    curve_b = train_llm(model, processor, seed=seed, phases=phases, pools=pools, count_stutter=count_stutter,
                        quiet=quiet)
    t2 = time.perf_counter()
    save(model, processor, out)
    curve = curve_a + curve_b
    _write_curve(curve, out)
    last_a = curve_a[-50:]
    meta = {
        "seed": seed, "vision_steps": vision_steps, "vision_lr": vision_lr, "vision_place": vision_place,
        "count_stutter": count_stutter, "phases": [asdict(p) for p in phases], "pools": {k: list(v) for k, v in pools.items()},
        "describe_share": DESCRIBE_SHARE, "frames": FRAMES, "arch": {**ARCH, **(arch or {})},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "seconds": {"vision": round(t1 - t0, 1), "llm": round(t2 - t1, 1), "total": round(t2 - t0, 1)},
        "vision_patch_accuracy_last_50": {
            "shape": float(np.nanmean([c["shape_acc"] for c in last_a])) if last_a else None,
            "colour": float(np.nanmean([c["colour_acc"] for c in last_a])) if last_a else None,
            "place_error_patches": float(np.mean([c["place_err"] for c in last_a])) if vision_place and last_a else None,
        },
        "final_loss_per_type": _loss_per_type(curve_b[-400:]),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "train.json").write_text(json.dumps(meta, indent=2) + "\n")
    if len(eval_seeds):
        t3 = time.perf_counter()
        meta["accuracy"] = evaluate(out, eval_seeds, quiet=quiet)
        meta["seconds"]["eval"] = round(time.perf_counter() - t3, 1)
        write_accuracy(out, meta["accuracy"])
        (out / "train.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "accuracy"}
                                                   | {"accuracy": {k: v for k, v in meta["accuracy"].items() if k != "answers"}},
                                                   indent=2) + "\n")
    return curve


def _loss_per_type(rows: list[dict]) -> dict:
    """Mean loss per example type (question types, then captions) over ``rows``."""
    return {k: float(np.mean(v)) for k in (*TYPES, "describe")
            if (v := [c["loss"] for c in rows if c["type"] == k])}


CHECK_ITEMS = 40  # the held-out items tests/test_toy.py asks again


def write_accuracy(out: Path, accuracy: dict) -> None:
    """OUT/accuracy.json: accuracy per type on the held-out seeds, uncompressed, and the first
    `CHECK_ITEMS` answers that tests/test_toy.py compares against."""
    seeds = accuracy["seeds"]
    check_ids = [f"toy-{s}" for s in range(seeds[0], seeds[0] + CHECK_ITEMS)]
    answers = {k: accuracy["answers"][k] for k in check_ids if k in accuracy["answers"]}
    truth = {f"toy-{s}": question(s)[1] for s in range(seeds[0], seeds[0] + len(answers))}
    record = {
        "what": "uncompressed accuracy (%) of this checkpoint, as stc.eval asks (videomme prompt, greedy, all frames)",
        "held_out": {k: accuracy[k] for k in ("seeds", "items", "overall", "per_type", "unparsed")},
        "chance": 25.0,
        "check": {"seeds": [seeds[0], seeds[0] + len(answers)], "answers": answers,
                  "correct": sum(answers[k] == truth[k] for k in answers)},
    }
    (out / "accuracy.json").write_text(json.dumps(record, indent=2) + "\n")


def save(model, processor, out: Path) -> None:
    model.config._name_or_path = str(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _write_curve(curve: list[dict], out: Path) -> None:
    fields = ["stage", "phase", "step", "seconds", "lr", "type", "frames", "grid", "loss", "shape_acc", "colour_acc"]
    if any("place_err" in row for row in curve):  # (stage A's place term: its error in patches)
        fields.append("place_err")
    with open(out / "loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in curve:
            writer.writerow({**{k: "" for k in fields}, **row, "lr": f"{row['lr']:.3e}", "loss": f"{row['loss']:.4f}",
                             **{k: f"{row[k]:.4f}" for k in ("shape_acc", "colour_acc", "place_err") if k in row}})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    a = [c for c in curve if c["stage"] == "A"]
    b = [c for c in curve if c["stage"] == "B"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100, gridspec_kw={"width_ratios": [1, 2]})

    def smooth(values, k):
        values = np.asarray(values, float)
        k = max(1, min(k, len(values)))
        return np.convolve(values, np.ones(k) / k, mode="valid"), k

    if a:
        ax = axes[0]
        y, k = smooth([c["loss"] for c in a], 20)
        ax.plot(np.arange(len(y)) + k, y, lw=1, label="loss (shape + colour)")
        ax.set_yscale("log")
        ax2 = ax.twinx()
        for key, style in (("shape_acc", "--"), ("colour_acc", ":")):
            vals = [c[key] for c in a]
            y, k = smooth(np.nan_to_num(vals, nan=np.nanmean(vals)), 20)
            ax2.plot(np.arange(len(y)) + k, y, style, lw=1, color="black", label=key.replace("_acc", " acc. (objects)"))
        ax2.set_ylim(0, 1)
        ax.set_xlabel("step")
        ax.set_title("A: vision tower, per-patch shape and colour", fontsize=9)
        ax.legend(fontsize=7, loc="center left")
        ax2.legend(fontsize=7, loc="center right")
    if b:
        ax = axes[1]
        losses = np.array([c["loss"] for c in b])
        x = np.arange(len(b)) / max(1, len(b) - 1)  # the run's examples in order
        bounds = [i for i in range(1, len(b)) if b[i]["phase"] != b[i - 1]["phase"]]
        for kind in (*TYPES, "describe"):
            pick = np.array([c["type"] == kind for c in b])
            if pick.sum() >= 10:
                k = max(1, int(pick.sum()) // 60)
                y = np.convolve(losses[pick], np.ones(k) / k, mode="valid")
                ax.plot(x[pick][k - 1:], y, label=kind, lw=1)
        for i in bounds:
            ax.axvline(x[i], color="black", lw=0.6)
        ax.set_yscale("log")
        ax.set_xlabel("share of stage B's examples (phases: " + ", ".join(dict.fromkeys(c["phase"] for c in b)) + ")")
        ax.set_title("B: Video-LLM on frozen features, loss per type (every clip length and grid)", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)


# -- accuracy ------------------------------------------------------------------------------------
def evaluate(checkpoint: str | os.PathLike, seeds, *, frames: int = FRAMES, workdir: str | os.PathLike | None = None,
             quiet: bool = True) -> dict:
    """Accuracy per question type of ``checkpoint`` (loaded with `stc.load`) on ``seeds``, asked
    as `stc.eval` asks (its manifest, prompt, answer parsing; uncompressed). Returns
    {"seeds", "items", "overall", "per_type": {type: accuracy}, "unparsed", "answers": {id: letter}}."""
    from ..eval import build_prompt, load_manifest, parse_answer
    from ..models import load

    llm = load(str(checkpoint), device="cpu", dtype="float32")
    seeds = list(seeds)
    with tempfile.TemporaryDirectory(prefix="stc-toy-eval-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        items = load_manifest(write_manifest(root, seeds, frames))
        kinds = {f"toy-{s}": TYPES[s % len(TYPES)] for s in seeds}
        answers, correct = {}, {kind: [] for kind in TYPES}
        for i, item in enumerate(items):
            text = llm.answer(str(item.video), build_prompt(item.question, item.options), max_new_tokens=16,
                              num_frames=frames).text
            letter = parse_answer(text, item.options)
            answers[item.id] = letter
            correct[kinds[item.id]].append(letter == item.answer)
            if not quiet and (i + 1) % 50 == 0:
                print(f"eval {i + 1}/{len(items)}", file=sys.stderr, flush=True)
    per_type = {k: round(100 * float(np.mean(v)), 1) for k, v in correct.items() if v}
    every = [c for v in correct.values() for c in v]
    return {"seeds": [seeds[0], seeds[-1] + 1] if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds,
            "items": len(every), "overall": round(100 * float(np.mean(every)), 1), "per_type": per_type,
            "unparsed": sum(v is None for v in answers.values()), "answers": answers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stc.toy.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("toy/llava-onevision"), help="checkpoint folder")
    parser.add_argument("--seed", type=int, default=0, help="weights and data order (default: 0)")
    parser.add_argument("--vision-steps", type=int, default=300, help="stage A steps (default: 300)")
    parser.add_argument("--vision-lr", type=float, default=3e-3)
    parser.add_argument("--vision-place", type=float, default=1.0,
                        help="weight of stage A's place term (every patch's column and row; default: 1; 0: none)")
    parser.add_argument("--count-stutter", type=float, default=0.5,
                        help="share of stage B's whole count clips given as a stuttered copy with fewer flashes "
                             "(stc.toy.stages.stuttered_clip; default: 0.5; 0: none, the previous recipe)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every stage-B phase's steps by this (a quick look: 0.1; default: 1)")
    parser.add_argument("--eval", type=int, default=100,
                        help="held-out questions to score after training (default: 100, 20 per type; 0: none; "
                             "the full table is stc.eval's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    phases = tuple(Phase(**{**asdict(p), "steps": max(1, round(p.steps * args.scale))}) for p in PHASES)
    train(args.out, seed=args.seed, vision_steps=args.vision_steps, vision_lr=args.vision_lr,
          vision_place=args.vision_place, count_stutter=args.count_stutter, phases=phases,
          eval_seeds=TEST_SEEDS[: args.eval])
    print((args.out / "train.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
