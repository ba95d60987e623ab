"""`python -m stc.toy.train`: train the toy LLaVA-OneVision on synthetic shape QA, from a seed.

The model is `LlavaOnevisionForConditionalGeneration` with the real token geometry (SigLIP
384 px / patch 14 -> 27x27 patches -> bilinear 14x14 = 196 tokens per frame, one
`image_newline` per video), the offline tokenizer and the real processor of
`stc.models.tiny`, and small widths (`ARCH`). Every weight, the vision tower included, is
trained from scratch with AdamW on UNCOMPRESSED inputs only (no compression method is seen in
training), by teacher forcing on exactly the prompt `stc.eval` builds: the chat template around
the video placeholder, the VideoMME-style text with the question and its four options, and the
answer = the option letter then `<|im_end|>`. The loss is on those two tokens.

Training clips come from `stc.toy.data` with seeds drawn from `TRAIN_SEEDS` by the run's seed;
each goes through an mp4 file and `load_video`, as the evaluation clips do. Then the checkpoint
(model + processor, `save_pretrained`) is written to OUT, with OUT/loss.csv (the loss curve),
OUT/loss.png and OUT/accuracy.json (accuracy per question type on held-out seeds, measured by
loading OUT with `stc.load` and answering as `stc.eval` does).

    python -m stc.toy.train --out toy/llava-onevision --seed 0 --steps 2000   # the committed weights

With ``--steps N`` the run stops after N steps instead of after ``--minutes``. The same seed,
steps and machine give the same weights (torch's CPU kernels are deterministic for one thread
count; ``--threads`` defaults to 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .data import FRAMES, LETTERS, TEST_SEEDS, TRAIN_SEEDS, TYPES, make_sample, write_manifest, write_mp4

__all__ = ["ARCH", "build_toy", "evaluate", "main", "toy_config", "train"]

# Widths and depths; every other value is the real checkpoint's (stc.models.tiny.tiny_config).
ARCH = dict(
    vision_hidden=48,
    vision_layers=2,
    vision_heads=3,  # head_dim 16
    text_hidden=96,
    text_layers=4,
    text_heads=6,  # head_dim 16
    text_kv_heads=2,
)

# The type curriculum: the question types are introduced one at a time (each phase draws its
# types uniformly; after the last phase, all four). Trained all at once from the first step, the
# toy stays at chance within a CPU budget (one such 15-minute run answered "B" to everything):
# every type needs its own way of finding a few tokens among 1,569, and the colour question (one
# still, saturated object) is the one that is found first.
PHASES: tuple[tuple[tuple[str, ...], int], ...] = (
    (("colour",), 400),
    (("colour", "flash"), 400),
    (("colour", "flash", "count"), 400),
)


def toy_config(arch: dict | None = None):
    """The LLaVA-OneVision config of the toy: `tiny_config`'s with ``arch``'s widths."""
    from stc.models.tiny import TINY_LLAVA_ONEVISION, tiny_config

    a = {**ARCH, **(arch or {})}
    config = tiny_config(TINY_LLAVA_ONEVISION)
    v, t = config.vision_config, config.text_config
    v.hidden_size, v.intermediate_size = a["vision_hidden"], 4 * a["vision_hidden"]
    v.num_hidden_layers, v.num_attention_heads = a["vision_layers"], a["vision_heads"]
    t.hidden_size, t.intermediate_size = a["text_hidden"], 3 * a["text_hidden"]
    t.num_hidden_layers, t.num_attention_heads = a["text_layers"], a["text_heads"]
    t.num_key_value_heads = a["text_kv_heads"]
    t.head_dim = a["text_hidden"] // a["text_heads"]
    t.layer_types = ["full_attention"] * a["text_layers"]
    config._name_or_path = "stc-toy/llava-onevision"
    return config


def build_toy(seed: int = 0, arch: dict | None = None):
    """(model, processor): the toy's initial weights from ``seed`` (the caller's RNG untouched)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    from stc.models.tiny import TINY_LLAVA_ONEVISION, set_generation_ids, tiny_processor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration._from_config(
            toy_config(arch), dtype=torch.float32, attn_implementation="sdpa"
        )
    set_generation_ids(model, TINY_LLAVA_ONEVISION)
    return model, tiny_processor(TINY_LLAVA_ONEVISION)


# -- examples ------------------------------------------------------------------------------------
class Prompts:
    """Token ids of each question type's prompt, as `stc.eval` + the adapter build them."""

    def __init__(self, model, processor):
        from stc.eval import build_prompt
        from stc.models.llava_onevision import LlavaOnevisionAdapter

        adapter = LlavaOnevisionAdapter(model, processor)
        tok = processor.tokenizer
        self.video_id = model.config.video_token_id
        self.end_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.letter_ids = [tok(letter, add_special_tokens=False)["input_ids"] for letter in LETTERS]
        assert all(len(ids) == 1 for ids in self.letter_ids), "option letters must be single tokens"
        self.ids: dict[str, tuple[list[int], list[int]]] = {}
        from .data import OPTIONS, QUESTIONS

        for kind in TYPES:
            self.ids[kind] = adapter.prompt_ids(build_prompt(QUESTIONS[kind], OPTIONS[kind], "videomme"))

    def example(self, kind: str, answer: str, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids [1, L], targets [2]): the prompt with T*196+1 video placeholders and the
        answer letter; the loss is on the letter and on <|im_end|> after it."""
        before, after = self.ids[kind]
        letter = self.letter_ids[LETTERS.index(answer)][0]
        ids = before + [self.video_id] * (frames * 196 + 1) + after + [letter]
        return torch.tensor([ids]), torch.tensor([letter, self.end_id])


def clip_pixels(processor, seed: int, frames: int, workdir: Path, scale: float = 1.0) -> tuple[torch.Tensor, object]:
    """(pixel_values_videos [1, T, 3, 384, 384], sample) of a seed, through mp4 and load_video."""
    from stc.video import load_video

    sample = make_sample(seed, frames, scale)
    path = write_mp4(sample.frames, workdir / f"{seed}.mp4")
    video = load_video(path, num_frames=frames)
    path.unlink()
    pixels = processor.video_processor(videos=[video.frames], return_tensors="pt")["pixel_values_videos"]
    return pixels, sample


def loss_on(model, input_ids: torch.Tensor, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the answer letter and <|im_end|>: the LM head runs on two rows only."""
    out = model.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values_videos=pixels)
    hidden = out.last_hidden_state[0, -2:]  # the rows that predict the letter and the end
    logits = model.lm_head(hidden)
    return torch.nn.functional.cross_entropy(logits.float(), targets)


# -- training ------------------------------------------------------------------------------------
def train(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    minutes: float = 18.0,
    steps: int | None = None,
    plan: int | None = None,
    frames: int = FRAMES,
    lr: float = 5e-4,
    warmup: int = 50,
    pool: int = 0,
    arch: dict | None = None,
    phases: tuple[tuple[tuple[str, ...], int], ...] = PHASES,
    curriculum: int = 3000,
    eval_seeds=TEST_SEEDS,
    log_every: int = 10,
    quiet: bool = False,
) -> list[dict]:
    """Train from ``seed`` for ``steps`` steps (or until ``minutes`` have passed), save the
    checkpoint and its records to ``out``; returns the loss curve (one dict per step).

    The first ``curriculum`` steps draw their clips with every object enlarged by a factor
    uniform in [1, top] (`make_sample`'s ``scale``, objects clipped to the frame), top = 5 for
    the first half, then falling linearly to 1: small things are found first where they are
    large. ``phases`` is the type curriculum (`PHASES`): each phase draws only its question types,
    and the steps after the last phase draw all four. ``pool`` > 0 reuses that many pre-made clips (a short run that must not spend its time
    encoding); 0 makes a fresh clip for every step. The learning rate warms up linearly for
    ``warmup`` steps, then follows a cosine to lr/10 over ``plan`` steps (default: ``steps``,
    or the step count the first 20 steps' speed predicts for ``minutes``; train.json records
    it, so ``steps`` + ``plan`` repeat a timed run exactly). ``eval_seeds`` empty skips the
    accuracy.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_toy(seed, arch)
    model.train()
    prompts = Prompts(model, processor)
    rng = np.random.default_rng([seed, 1414])
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name or "embed" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    budget = minutes * 60
    planned = plan if plan is not None else steps
    curve: list[dict] = []
    t_start = time.perf_counter()
    data_seconds = 0.0
    cache: list = []
    ends = np.cumsum([steps_ for _, steps_ in phases]).tolist()

    def kinds_at(step: int) -> list[int]:
        """The question types drawn at ``step``: its phase's, all of them after the last phase."""
        for (kinds, _), end in zip(phases, ends):
            if step < end:
                return [TYPES.index(k) for k in kinds]
        return list(range(len(TYPES)))

    with tempfile.TemporaryDirectory(prefix="stc-toy-") as tmp:
        workdir = Path(tmp)

        def make(step: int):
            if pool and step >= pool:
                return cache[step % pool]
            seed_ = int(rng.integers(TRAIN_SEEDS.stop // len(TYPES))) * len(TYPES)
            drawn = kinds_at(step)
            seed_ += drawn[int(rng.integers(len(drawn)))]
            # curriculum: objects up to 5x larger (clipped to the frame) for the first half of
            # `curriculum`, then shrinking linearly to their real size at `curriculum`
            top = 1.0 + 4.0 * min(1.0, max(0.0, 2.0 - 2.0 * step / curriculum)) if curriculum else 1.0
            item = clip_pixels(processor, seed_, frames, workdir, float(rng.uniform(1.0, top)))
            if pool:
                cache.append(item)
            return item

        # Clips are made one step ahead in a thread (encoding and decoding overlap the step).
        ahead = _Ahead(make)
        step = 0
        while True:
            elapsed = time.perf_counter() - t_start
            if steps is not None and step >= steps:
                break
            if steps is None and elapsed >= budget:
                break
            if planned is None and step == 20:
                # Plan the cosine from the speed so far (the first steps include warm-up costs).
                per_step = elapsed / step
                planned = max(step + 1, int(budget / per_step))
            t0 = time.perf_counter()
            pixels, sample = ahead.get(step)
            data_seconds += time.perf_counter() - t0
            input_ids, targets = prompts.example(sample.kind, sample.answer, pixels.shape[1])
            scale = min(1.0, (step + 1) / warmup)
            if planned is not None and step >= warmup:
                progress = min(1.0, (step - warmup) / max(1, planned - warmup))
                scale = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
            for group in opt.param_groups:
                group["lr"] = lr * scale
            loss = loss_on(model, input_ids, pixels, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            curve.append({"step": step, "seconds": round(time.perf_counter() - t_start, 2), "lr": lr * scale,
                          "type": sample.kind, "loss": float(loss.detach())})
            if not quiet and (step % log_every == 0 or step == 1):
                recent = curve[-max(log_every, 100):]
                by_type = " ".join(f"{k} {np.mean([c['loss'] for c in recent if c['type'] == k]):.2f}"
                                   for k in TYPES if any(c["type"] == k for c in recent))
                print(f"step {step} {curve[-1]['seconds']:.0f}s loss {np.mean([c['loss'] for c in recent]):.3f} "
                      f"({by_type}) lr {lr * scale:.2e} (waiting for data {data_seconds:.0f}s)",
                      file=sys.stderr, flush=True)
        ahead.close()

    model.eval()
    seconds = time.perf_counter() - t_start
    save(model, processor, out)
    _write_curve(curve, out)
    meta = {
        "seed": seed, "steps": len(curve), "train_seconds": round(seconds, 1), "data_seconds": round(data_seconds, 1),
        "plan": planned, "curriculum": curriculum,
        "phases": [["+".join(k), n] for k, n in phases], "frames": frames, "lr": lr, "warmup": warmup, "pool": pool, "arch": {**ARCH, **(arch or {})},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "final_loss_mean_last_100": float(np.mean([c["loss"] for c in curve[-100:]])) if curve else None,
    }
    if len(eval_seeds):
        meta["accuracy"] = evaluate(out, eval_seeds, frames=frames, quiet=quiet)
        write_accuracy(out, meta["accuracy"])
    (out / "train.json").write_text(json.dumps(meta, indent=2) + "\n")
    return curve


class _Ahead:
    """make(step) for step 0, 1, 2, ... computed one step ahead in a worker thread, in order."""

    def __init__(self, make):
        from concurrent.futures import ThreadPoolExecutor

        self._make, self._pool = make, ThreadPoolExecutor(max_workers=1)
        self._next = self._pool.submit(make, 0)

    def get(self, step: int):
        item = self._next.result()
        self._next = self._pool.submit(self._make, step + 1)
        return item

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


CHECK_ITEMS = 40  # the held-out items tests/test_toy.py asks again


def write_accuracy(out: Path, accuracy: dict) -> None:
    """OUT/accuracy.json: accuracy per type on the held-out seeds, uncompressed, and the first
    `CHECK_ITEMS` answers that tests/test_toy.py compares against."""
    seeds = accuracy["seeds"]
    check_ids = [f"toy-{s}" for s in range(seeds[0], seeds[0] + CHECK_ITEMS)]
    answers = {k: accuracy["answers"][k] for k in check_ids if k in accuracy["answers"]}
    truth = {f"toy-{s}": make_sample(s).answer for s in range(seeds[0], seeds[0] + len(answers))}
    record = {
        "what": "uncompressed accuracy (%) of this checkpoint, as stc.eval asks (videomme prompt, greedy, all frames)",
        "held_out": {k: accuracy[k] for k in ("seeds", "items", "overall", "per_type")},
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
    with open(out / "loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "seconds", "lr", "type", "loss"], lineterminator="\n")
        writer.writeheader()
        for row in curve:
            writer.writerow({**row, "lr": f"{row['lr']:.3e}", "loss": f"{row['loss']:.4f}"})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    steps = np.array([c["step"] for c in curve])
    losses = np.array([c["loss"] for c in curve])
    for kind in TYPES:
        pick = np.array([c["type"] == kind for c in curve])
        if pick.sum() >= 10:
            k = max(1, int(pick.sum()) // 40)
            smooth = np.convolve(losses[pick], np.ones(k) / k, mode="valid")
            ax.plot(steps[pick][k - 1:], smooth, label=kind, lw=1)
    # guessing among the four letters, with the end token learnt: (ln 4 + 0) / 2
    ax.axhline(math.log(4) / 2, color="grey", ls="--", lw=0.8, label="chance (ln 4 / 2)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean of letter and end)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("toy LLaVA-OneVision: training loss per question type", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)


# -- accuracy ------------------------------------------------------------------------------------
def evaluate(checkpoint: str | os.PathLike, seeds, *, frames: int = FRAMES, workdir: str | os.PathLike | None = None,
             quiet: bool = True) -> dict:
    """Accuracy per question type of ``checkpoint`` (loaded with `stc.load`) on ``seeds``, asked
    as `stc.eval` asks (its manifest, prompt, answer parsing; uncompressed). Returns
    {"seeds": [start, stop], "items", "overall", "per_type": {type: accuracy}, "answers": {id: letter}}."""
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
                              num_frames=32).text
            letter = parse_answer(text, item.options)
            answers[item.id] = letter
            correct[kinds[item.id]].append(letter == item.answer)
            if not quiet and (i + 1) % 50 == 0:
                print(f"eval {i + 1}/{len(items)}", file=sys.stderr, flush=True)
    per_type = {k: round(100 * float(np.mean(v)), 1) for k, v in correct.items() if v}
    every = [c for v in correct.values() for c in v]
    return {"seeds": [seeds[0], seeds[-1] + 1] if seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds,
            "items": len(every), "overall": round(100 * float(np.mean(every)), 1), "per_type": per_type,
            "answers": answers}


def _phases(text: str) -> tuple[tuple[tuple[str, ...], int], ...]:
    phases = []
    for part in filter(None, text.split(",")):
        kinds, _, steps = part.partition(":")
        kinds_ = tuple(kinds.split("+"))
        if not steps.isdigit() or not set(kinds_) <= set(TYPES):
            raise argparse.ArgumentTypeError(f"a phase is TYPE[+TYPE...]:STEPS with types from {TYPES}, got {part!r}")
        phases.append((kinds_, int(steps)))
    return tuple(phases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stc.toy.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("toy/llava-onevision"), help="checkpoint folder")
    parser.add_argument("--seed", type=int, default=0, help="weights and data order (default: 0)")
    parser.add_argument("--minutes", type=float, default=18.0, help="training time when --steps is not given")
    parser.add_argument("--steps", type=int, default=None, help="train exactly this many steps")
    parser.add_argument("--plan", type=int, default=None,
                        help="steps of the cosine schedule (default: --steps, or what --minutes allows)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--curriculum", type=int, default=3000,
                        help="objects up to 5x for the first half of this many steps, then shrinking to their "
                             "real size at its end (default: 3000)")
    parser.add_argument("--phases", type=_phases, default=PHASES,
                        help="the type curriculum: TYPE[+TYPE...]:STEPS,... then all types (default: "
                             + ",".join("+".join(k) + f":{n}" for k, n in PHASES) + "; '' for none)")
    parser.add_argument("--pool", type=int, default=0, help="reuse this many clips (0: a fresh clip every step)")
    parser.add_argument("--eval", type=int, default=len(TEST_SEEDS),
                        help=f"held-out questions to score after training (default: {len(TEST_SEEDS)}; 0: none)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.out, seed=args.seed, minutes=args.minutes, steps=args.steps, plan=args.plan, frames=args.frames, lr=args.lr,
          warmup=args.warmup, pool=args.pool, curriculum=args.curriculum, phases=args.phases, eval_seeds=TEST_SEEDS[: args.eval])
    print((args.out / "train.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
