"""The toy's two training stages: A, the vision tower alone on single frames (`pretrain_vision`);
B, the Video-LLM on the frozen tower's features in batched phases (`train_llm`, `PHASES`). See
`stc.toy.train` for the recipe and why."""

from __future__ import annotations

import contextlib
import ctypes
import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .data import COLOURS, FRAMES, LETTERS, MIN_FRAMES, SHAPES, TRAIN_SEEDS, TYPES, make_sample
from .model import (COLOUR_CLASSES, DESCRIBE, PATCHES, SHAPE_CLASSES, SHORT_FRAMES, Prompts, patch_labels, pixel_values,
                    vision_features)

__all__ = ["DESCRIBE", "PHASES", "POOLS", "Phase", "describe", "encode_pool", "pool_rng", "pretrain_vision",
           "shorter_clip", "standardize_projector", "stuttered_clip", "train_llm", "visual_tokens"]


# -- stage A: the vision tower -------------------------------------------------------------------
def pretrain_vision(model, *, seed: int = 0, steps: int = 300, lr: float = 3e-3, frames_per_step: int = 8,
                    warmup: int = 20, place: float = 0.0, log_every: int = 25, quiet: bool = False) -> list[dict]:
    """Stage A: train the vision tower alone to describe single frames of training clips: for
    every patch, the colour of the object drawn there (or the background; object patches and
    background weigh half each), and for every object, from its patches' mean feature (a
    region's description), its kind of shape. Returns the curve (one dict per step: loss, the
    shape accuracy per object and the colour accuracy on object patches); the heads are thrown
    away afterwards.

    ``place`` > 0 adds where: a linear head reads every patch's column and row (scaled to
    [-1, 1]) from its features, its mean squared error weighted by ``place``, and the curve gets
    ``place_err`` (mean absolute error, in patches). Without it the tower's features do not
    say where a patch is: a least-squares probe of a tower trained without it (the weights before
    2026-12-07) reads a ball patch's column with R^2 0.04, with it (place 1, the recipe's default:
    `stc.toy.train.train(vision_place=...)`) 0.76 (toy/attempts/place_probe.py); without it the
    LLM can only find a place from its token's position in the sequence (toy/attempts/README.md).

    Each step reads ``frames_per_step`` frames: two random frames from each of
    ``frames_per_step // 2`` training clips of 4 frames (every type, so flashes, balls and
    repeats are all seen)."""
    tower = model.model.vision_tower
    dim = model.config.vision_config.hidden_size
    gen = torch.Generator().manual_seed(seed * 7919 + 1)
    shape_head, colour_head = torch.nn.Linear(dim, SHAPE_CLASSES), torch.nn.Linear(dim, COLOUR_CLASSES)
    place_head = torch.nn.Linear(dim, 2) if place else None  # (none: the recipe's draws as before)
    for head in (shape_head, colour_head, place_head):
        if head is not None:
            torch.nn.init.normal_(head.weight, std=0.02, generator=gen)
            torch.nn.init.zeros_(head.bias)
    params = list(tower.parameters()) + list(shape_head.parameters()) + list(colour_head.parameters())
    if place:
        params += list(place_head.parameters())
    grid = torch.arange(PATCHES * PATCHES)
    where = torch.stack([grid % PATCHES, grid // PATCHES], 1).float() / (PATCHES - 1) * 2 - 1  # [729, 2] column, row
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng([seed, 2020])
    tower.train()
    curve: list[dict] = []
    t_start = time.perf_counter()
    for step in range(steps):
        pix, shp, col = [], [], []
        for _ in range(frames_per_step // 2):
            sample = make_sample(int(rng.integers(TRAIN_SEEDS.stop)), 4)
            pick = np.sort(rng.choice(4, size=2, replace=False))
            pix.append(pixel_values(sample.frames[pick]))
            s, c = patch_labels(sample.labels[pick])
            shp.append(s)
            col.append(c)
        pixels, shape_t, colour_t = torch.cat(pix), torch.cat(shp), torch.cat(col)
        hidden = vision_features(model, pixels)[:, : PATCHES * PATCHES]
        flat, shape_f, colour_f = hidden.flatten(0, 1), shape_t.flatten(), colour_t.flatten()
        obj = shape_f > 0
        # per patch, its colour (background / grey / which colour): object patches (~6% of a
        # frame) and the background weigh half each
        colour_logits = colour_head(flat)
        per_patch = F.cross_entropy(colour_logits, colour_f, reduction="none")
        loss = 0.5 * per_patch[~obj].mean() + 0.5 * per_patch[obj].mean()
        # per object (its patches' mean feature: a region's description), its kind of shape
        frame = torch.arange(shape_t.shape[0]).repeat_interleave(shape_t.shape[1])
        group = (frame * SHAPE_CLASSES + shape_f) * COLOUR_CLASSES + colour_f
        ids, inverse = torch.unique(group[obj], return_inverse=True)
        sums = torch.zeros(len(ids), flat.shape[1]).index_add_(0, inverse, flat[obj])
        sizes = torch.zeros(len(ids)).index_add_(0, inverse, torch.ones(int(obj.sum())))
        region_shape = (ids // COLOUR_CLASSES) % SHAPE_CLASSES
        shape_logits = shape_head(sums / sizes[:, None])
        loss = loss + F.cross_entropy(shape_logits, region_shape)
        if place:  # every patch's column and row, read linearly from its features
            place_pred = place_head(hidden).view(-1, PATCHES * PATCHES, 2)
            loss = loss + place * F.mse_loss(place_pred, where.expand_as(place_pred))
        _set_lr(opt, lr, step, warmup, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            acc_s = float((shape_logits.argmax(-1) == region_shape).float().mean())
            acc_c = float((colour_logits.argmax(-1) == colour_f)[obj].float().mean())
            record = {"place_err": float((place_pred - where).abs().mean()) * (PATCHES - 1) / 2} if place else {}
        curve.append({"stage": "A", "step": step + 1, "seconds": round(time.perf_counter() - t_start, 2),
                      "lr": opt.param_groups[0]["lr"], "type": "frame", "loss": float(loss.detach()),
                      "shape_acc": acc_s, "colour_acc": acc_c, **record})
        if not quiet and ((step + 1) % log_every == 0 or step == 0):
            recent = curve[-log_every:]
            print(f"A step {step + 1} {curve[-1]['seconds']:.0f}s loss {np.mean([c['loss'] for c in recent]):.3f} "
                  f"shape per object {np.nanmean([c['shape_acc'] for c in recent]):.3f} "
                  f"colour per object patch {np.nanmean([c['colour_acc'] for c in recent]):.3f}"
                  + (f" place error {np.mean([c['place_err'] for c in recent]):.2f} patches" if place else ""),
                  file=sys.stderr, flush=True)
    tower.eval()
    return curve


def _set_lr(opt, lr: float, step: int, warmup: int, steps: int) -> None:
    """Linear warm-up for ``warmup`` steps, then a cosine to lr / 10 at ``steps``."""
    scale = min(1.0, (step + 1) / max(1, warmup))
    if step >= warmup:
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        scale = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    for group in opt.param_groups:
        group["lr"] = lr * scale


# -- stage B: the Video-LLM on frozen features ---------------------------------------------------
def shorter_clip(sample, rng: np.random.Generator) -> tuple[list[int], str]:
    """(frames, answer): a shorter clip of ``sample`` (1 to T-1 of its frames, in order, at least
    the type's `MIN_FRAMES`; all T when T is the minimum) whose answer is still true: it keeps
    a frame of every event the answer rests on (the flash; each ordered shape), or, for count,
    1 to n of the n flashes and none of the others, and says how many it kept."""
    total = len(sample.frames)
    k = int(rng.integers(MIN_FRAMES[sample.kind], max(MIN_FRAMES[sample.kind] + 1, total)))
    answer = sample.answer
    events = list(sample.events)
    if sample.kind == "count":
        kept = int(rng.integers(1, min(len(events), k) + 1))
        order = rng.permutation(len(events))
        events, dropped = [events[i] for i in order[:kept]], [events[i] for i in order[kept:]]
        banned = {f for e in dropped for f in e}
        answer = LETTERS[kept - 1]
    else:
        banned = set()
    chosen = {int(e[int(rng.integers(len(e)))]) for e in events}
    rest = [f for f in range(total) if f not in chosen and f not in banned]
    extra = max(0, k - len(chosen))
    chosen |= {int(f) for f in rng.choice(rest, size=min(extra, len(rest)), replace=False)}
    return sorted(chosen), answer


def stuttered_clip(sample, rng: np.random.Generator) -> tuple[list[int], str] | None:
    """(frames, answer): the whole count clip ``sample`` (all T frames) with 0 to n - 1 of its n
    flashes taken out, each flash frame replaced by a copy of the last frame before it that holds
    no flash (else the first after it): a clip that stutters where a flash was, as
    real video repeats frames, with the same length and background and another true count
    (1 to n kept, uniformly). So the full-length clip no longer always has the same answer, and
    its count cannot be recalled from what the clip looks like (the ``count_stutter`` option of
    `train_llm`). None when the clip has no frame without a flash to copy."""
    total = len(sample.frames)
    events = list(sample.events)
    flashes = {f for event in events for f in event}
    still = [f for f in range(total) if f not in flashes]
    if not still:
        return None
    kept = int(rng.integers(1, len(events) + 1))
    order = rng.permutation(len(events))
    dropped = {f for i in order[kept:] for f in events[i]}

    def copy_of(f: int) -> int:
        before = [g for g in still if g < f]
        return before[-1] if before else min(g for g in still if g > f)

    return [copy_of(f) if f in dropped else f for f in range(total)], LETTERS[kept - 1]


NUMBERS = ("one", "two", "three", "four")


def _coloured(sample, f: int, colour: int | None = None) -> tuple[str, str]:
    """(colour, shape) of the saturated object drawn in frame ``f`` (the most common pair of its
    pixels' labels; ``colour`` restricts to one colour class)."""
    labels = sample.labels[f].reshape(-1, 2)
    mask = labels[:, 1] >= 2 if colour is None else labels[:, 1] == colour
    pairs, counts = np.unique(labels[mask], axis=0, return_counts=True)
    shape_class, colour_class = pairs[int(counts.argmax())]
    return list(COLOURS)[int(colour_class) - 2], SHAPES[int(shape_class) - 1]


def describe(sample, frames: list[int]) -> str:
    """One sentence saying what the clip made of ``frames`` of ``sample`` shows (frames counted
    from 1 within that clip): the caption stage B also trains on, so that every step names the
    objects, colours and times the questions ask about with many target tokens, not one letter
    (as LLaVA learns to describe before it learns to answer)."""
    at = {f: i + 1 for i, f in enumerate(frames)}
    kept = [tuple(f for f in event if f in at) for event in sample.events]
    if sample.kind == "colour":
        colour, shape = _coloured(sample, frames[0])
        return f"a small {colour} {shape}."
    if sample.kind == "flash":
        colour, shape = _coloured(sample, kept[0][0])
        return f"a {colour} {shape} in frame {at[kept[0][0]]}."
    if sample.kind == "motion":
        colour, _ = _coloured(sample, frames[0])
        way = {"A": "left", "B": "right", "C": "up", "D": "down"}[sample.answer]
        return f"a {colour} ball moving {way}."
    if sample.kind == "count":
        seen = sorted(at[e[0]] for e in kept if e)
        where = ", ".join(map(str, seen[:-1])) + (" and " if len(seen) > 1 else "") + str(seen[-1])
        return f"{NUMBERS[len(seen) - 1]} red square{'s' * (len(seen) > 1)}, in frame{'s' * (len(seen) > 1)} {where}."
    (c1, s1), (c2, s2) = (_coloured(sample, e[0]) for e in kept)
    return f"a {c1} {s1} in frame {at[kept[0][0]]}, then a {c2} {s2} in frame {at[kept[1][0]]}."


def visual_tokens(model, feats: torch.Tensor, grid: int) -> torch.Tensor:
    """[T, 729, Dv] tower features -> [T * grid^2 + 1, Dt] LLM inputs: the projector, then
    LLaVA-OneVision's own bilinear pooling (grid 14), a further 2x2 average (grid 7) or none
    (grid 27), then the one `image_newline`."""
    core = model.model
    x = core.multi_modal_projector(feats)
    if grid != PATCHES:
        x = core.apply_pooling(x)  # [T, 196, Dt]
        if grid != 14:
            t, n, d = x.shape
            side = int(math.isqrt(n))
            x = F.avg_pool2d(x.view(t, side, side, d).permute(0, 3, 1, 2), 2, ceil_mode=True)
            x = x.permute(0, 2, 3, 1).reshape(t, -1, d)
    return torch.cat([x.reshape(-1, x.shape[-1]), core.image_newline[None].to(x.dtype)])


def standardize_projector(model, features: list[torch.Tensor]) -> None:
    """Fold the frozen tower's feature statistics (mean and std per channel over ``features``,
    training clips) into the projector's first layer, so that it starts on standardised inputs:
    the tower's residual stream carries a large common component (norm ~35 against ~10 for what
    differs between patches) that would otherwise dominate the projector's first steps."""
    x = torch.cat([f.reshape(-1, f.shape[-1]) for f in features]).float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    layer = model.model.multi_modal_projector.linear_1
    with torch.no_grad():
        weight = layer.weight / std[None, :]
        layer.bias -= weight @ mean
        layer.weight.copy_(weight)


def encode_pool(model, count: int, frames: int, top_scale: float, rng: np.random.Generator) -> list[tuple]:
    """``count`` training clips of ``frames`` frames (objects drawn 1 to ``top_scale`` times their
    size, seeds from `TRAIN_SEEDS` drawn by ``rng``) through the frozen tower, computed once:
    [(sample, features fp16 [T, 729, Dv])]. The samples keep their labels (the captions read
    them) but not their pixels: a 16-frame clip's frames are 7 MB, its labels 4.7 MB and its
    features 1.5 MB. Encoding runs under `_mmap_threshold` (else 12 MB resident a pooled clip)."""
    pool = []
    with torch.no_grad(), _mmap_threshold(1 << 20):
        for _ in range(count):
            seed, scale = int(rng.integers(TRAIN_SEEDS.stop)), float(rng.uniform(1.0, top_scale))
            sample = make_sample(seed, frames, scale)
            feats = vision_features(model, pixel_values(sample.frames)).half()
            empty = np.empty((len(sample.frames), 0, 0, 3), np.uint8)  # still T frames long
            pool.append((replace(sample, frames=empty), feats))
    return pool


@contextlib.contextmanager
def _mmap_threshold(inside: int, after: int = 32 << 20):
    """glibc's mmap threshold pinned to ``inside`` bytes, then to ``after`` (glibc's own ceiling
    for it). By default glibc raises the threshold to the largest block freed so far: a clip's
    28 MB of float pixels lifts it past every block encoding allocates, those come from the heap
    with the pool's long-lived labels and features between them, and the heap cannot shrink.
    `python toy/attempts/pool_memory.py --clips 80 [--default]`: 11.7 MB resident a pooled
    16-frame clip by default, 5.2 MB pinned at 1 MB (two 800-clip runs were killed at 24 GB).
    glibc has no call that restores its dynamic threshold, so the process keeps a fixed one
    (``after``) from here on: training allocates and frees the same sizes every step, and the whole
    run peaked at 7.7 GB that way. A no-op where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        mallopt = None
    M_MMAP_THRESHOLD = -3
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, inside)
    try:
        yield
    finally:
        if mallopt is not None:
            mallopt(M_MMAP_THRESHOLD, after)


@dataclass(frozen=True)
class Phase:
    """One phase of stage B: ``steps`` steps of ``batch`` examples from the ``pool`` (a name in
    `POOLS`: "short", `SHORT_FRAMES`-frame clips; "long" and "native", `FRAMES`-frame clips),
    AdamW at ``lr`` (``warmup`` steps up, then a cosine to lr / 10). An example is a clip whole
    or a `shorter_clip` of it (half each) at ``native`` (14 x 14 tokens a frame,
    LLaVA-OneVision's own) with probability ``native`` when it has at most ``native_frames``
    frames, else at 7 x 7 (the same pooled once more, as LLaVA-OneVision pools for many
    frames)."""

    name: str
    pool: str
    steps: int
    batch: int
    lr: float
    warmup: int
    native: float = 0.0
    native_frames: int = FRAMES

    def grid(self, frames: int, rng: np.random.Generator) -> int:
        return 14 if frames <= self.native_frames and rng.random() < self.native else 7


# The committed toy's stage B: short clips at 7 x 7 until every type is learnt, then 16-frame
# clips with short ones at the native grid, then everything at the native grid on clips drawn at
# the evaluation's own scale (the "native" pool: objects 1x, as `make_sample` draws held-out
# clips). The native pool was added after measuring that the earlier weights answered count 76%
# on pooled clips at their training scale (1-2x) but 52% at 1x (toy/attempts/scale_gap.py).
PHASES = (
    Phase("short", "short", steps=700, batch=32, lr=2e-3, warmup=30),
    Phase("long", "long", steps=500, batch=16, lr=1e-3, warmup=20, native=0.4, native_frames=6),
    Phase("native", "native", steps=350, batch=8, lr=5e-4, warmup=10, native=1.0),
)
POOLS = {"short": (800, SHORT_FRAMES, 3.0), "long": (800, FRAMES, 2.0),  # clips, frames, top object scale
         "native": (800, FRAMES, 1.0)}
DESCRIBE_SHARE = 0.3  # examples that are the clip's caption instead of its question


def pool_rng(seed: int, name: str, pools: dict) -> np.random.Generator:
    """The generator that draws pool ``name``'s clips: keyed by (``seed``, 1414, its frame count),
    plus its position in ``pools`` when an earlier pool has the same frame count, so that two
    pools of one length draw other clips while the first keeps the draws it always had."""
    names, frames = list(pools), pools[name][1]
    at = names.index(name)
    shared = any(pools[k][1] == frames for k in names[:at])
    return np.random.default_rng([seed, 1414, frames] + ([at] if shared else []))


def _batch(model, prompts: Prompts, examples: list[tuple]) -> tuple[torch.Tensor, list[dict]]:
    """Mean per-example loss of ``examples`` [(sample, features, frames, answer, grid, task)],
    and one record per example. Rows of one length run as one batch with no padding and no
    mask (SDPA's causal kernel; on this CPU 3x faster than a left-padded batch of mixed lengths
    with its mask at 14 x 14, ~1.5x on 4-frame clips at 7 x 7; the same sums up to rounding)."""
    core = model.model
    rows = []
    for sample, feats, frames, answer, grid, task in examples:
        visual = visual_tokens(model, feats[frames].float(), grid)
        if task == "describe":
            ids, targets, start = prompts.description(describe(sample, frames), visual.shape[0])
        else:
            ids, targets, start = prompts.answer(sample.kind, sample.options[LETTERS.index(answer)], visual.shape[0])
        emb = core.get_input_embeddings()(ids)[0]
        rows.append((torch.cat([emb[:start], visual, emb[start + visual.shape[0]:]]), targets))
    per_row: list[torch.Tensor | None] = [None] * len(rows)
    for length in sorted({r[0].shape[0] for r in rows}):
        group = [i for i, r in enumerate(rows) if r[0].shape[0] == length]
        embeds = torch.stack([rows[i][0] for i in group])
        hidden = core.language_model(inputs_embeds=embeds, position_ids=torch.arange(length)[None]).last_hidden_state
        for k, i in enumerate(group):
            targets = rows[i][1]
            # hidden state p predicts the token at p + 1: the row ends with targets[:-1], so the
            # last targets.numel() states predict the targets
            logits = model.lm_head(hidden[k, length - targets.numel():]).float()
            per_row[i] = F.cross_entropy(logits, targets)
    losses = torch.stack(per_row)
    records = [{"type": task if task == "describe" else sample.kind, "frames": len(frames), "grid": grid,
                "loss": float(v)} for (sample, _, frames, _, grid, task), v in zip(examples, losses.detach())]
    return losses.mean(), records


def train_llm(model, processor, *, seed: int = 0, phases=PHASES, pools=POOLS, describe_share: float = DESCRIBE_SHARE,
              count_stutter: float = 0.0, log_every: int = 20, quiet: bool = False) -> list[dict]:
    """Stage B: the projector, `image_newline` and LLM learn to answer on the frozen tower's
    features, in ``phases`` (`Phase`), batched. Each pool of ``pools`` ({name: (clips, frames,
    top object scale)}) is encoded through the frozen tower once, when a phase first needs it.
    An example is the clip's caption (`describe`, prompt `DESCRIBE`) with probability
    ``describe_share``, else its question answered with the right option's text and
    <|im_end|> (what `stc.eval`'s parser reads as that option). A whole count clip is, with
    probability ``count_stutter``, a `stuttered_clip` of itself instead, drawn from a generator
    of its own: every example's clip, length, grid and task are the ones drawn without it.
    Returns the curve: one record per example (stage "B", phase, step, seconds, lr, type,
    frames, grid, loss)."""
    tower = model.model.vision_tower
    for p in tower.parameters():
        p.requires_grad_(False)
    tower.eval()
    prompts = Prompts(model, processor)
    rng = np.random.default_rng([seed, 1515])
    stutter_rng = np.random.default_rng([seed, 1616])  # its own draws: every other example is as without it
    encoded: dict[str, list] = {}
    curve: list[dict] = []
    t_start = time.perf_counter()
    for phase in phases:
        if phase.pool not in encoded:
            count, frames, top = pools[phase.pool]
            t0 = time.perf_counter()
            encoded[phase.pool] = encode_pool(model, count, frames, top, pool_rng(seed, phase.pool, pools))
            if not quiet:
                print(f"B pool {phase.pool}: {count} clips of {frames} frames encoded in {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr, flush=True)
            if not curve:  # the projector starts on standardised features
                standardize_projector(model, [f.float() for _, f in encoded[phase.pool][:8]])
        pool = encoded[phase.pool]
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=phase.lr, betas=(0.9, 0.98), weight_decay=0.01)
        model.train()
        for step in range(phase.steps):
            examples = []
            for _ in range(phase.batch):
                sample, feats = pool[int(rng.integers(len(pool)))]
                if rng.random() < 0.5:
                    frames, answer = list(range(len(sample.frames))), sample.answer
                    if count_stutter and sample.kind == "count" and stutter_rng.random() < count_stutter:
                        frames, answer = stuttered_clip(sample, stutter_rng) or (frames, answer)
                else:
                    frames, answer = shorter_clip(sample, rng)
                grid = phase.grid(len(frames), rng)
                task = "describe" if rng.random() < describe_share else "answer"
                examples.append((sample, feats, frames, answer, grid, task))
            loss, records = _batch(model, prompts, examples)
            _set_lr(opt, phase.lr, step, phase.warmup, phase.steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            seconds = round(time.perf_counter() - t_start, 2)
            curve += [{"stage": "B", "phase": phase.name, "step": step + 1, "seconds": seconds,
                       "lr": opt.param_groups[0]["lr"], **r} for r in records]
            if not quiet and ((step + 1) % log_every == 0 or step == 0):
                recent = curve[-log_every * phase.batch:]
                by = " ".join(f"{k} {np.mean([c['loss'] for c in recent if c['type'] == k]):.2f}"
                              for k in (*TYPES, "describe") if any(c["type"] == k for c in recent))
                print(f"B {phase.name} step {step + 1}/{phase.steps} {seconds:.0f}s {by}", file=sys.stderr, flush=True)
    model.eval()
    return curve

