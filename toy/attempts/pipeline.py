"""Issue 20: the whole batched toy recipe in one command (stage A, both feature pools, both
stage-B phases, held-out accuracy), timed, so that its cost can be held against the 60-minute
budget. Run on a tree with toy-v2.patch applied:

    PYTHONPATH=<tree> python toy/attempts/pipeline.py <out>

Stage A: `pretrain_vision` (VSTEPS, default 300). The tower is then frozen. Pool 1: P4 (800)
4-frame training clips, objects 1-3x their size, through the tower. Phase 1: S1 (700) steps of
B1 (32) examples at LR1 (2e-3): a pool-1 clip whole or a `shorter_clip`, 7x7 tokens a frame, its
caption (probability DESC) or its question answered with the option's text. Pool 2: P16 (400)
16-frame clips, objects 1-2x. Phase 2: S2 (400) steps of B2 (16) at LR2 (1e-3) from phase 1: a
pool-2 clip whole or shorter; a clip of at most BIGF (6) frames goes in at 14x14 (the model's own
196 tokens a frame) with probability BIG (0.4), anything else at 7x7. Phase 3: S3 (120) steps of
B3 (8) at LR3 (5e-4) from phase 2, every example at 14x14 (whole 16-frame clips half the time:
3,137 visual tokens). Then `pilot_eval.py <out> 16 7 14` (PHASE=3 reads stage_b3.pt).

Writes <out>/towerA.pt, pool4.pt, pool16.pt, stage_b.pt (phase 2; phase1.pt after phase 1),
stage_b3.pt (phase 3), loss.csv (every stage's per-example losses) and times.json. A file already there is reused, so
a cut run resumes at its last finished part. Nothing here reads a compressor's output.
"""
import csv
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from stc.toy.data import LETTERS, TRAIN_SEEDS, TYPES, make_sample
from stc.toy.train import (Prompts, _set_lr, build_toy, describe, pixel_values, pretrain_vision, shorter_clip,
                           standardize_projector, vision_features, visual_tokens)

OUT = sys.argv[1]
env = os.environ.get
VSTEPS, P4, P16 = int(env("VSTEPS", "300")), int(env("P4", "800")), int(env("P16", "400"))
S1, B1, LR1 = int(env("S1", "700")), int(env("B1", "32")), float(env("LR1", "2e-3"))
S2, B2, LR2 = int(env("S2", "400")), int(env("B2", "16")), float(env("LR2", "1e-3"))
S3, B3, LR3 = int(env("S3", "120")), int(env("B3", "8")), float(env("LR3", "5e-4"))
DESC, BIG, BIGF = float(env("DESC", "0.3")), float(env("BIG", "0.4")), int(env("BIGF", "6"))
torch.set_num_threads(int(env("THREADS", "2")))
os.makedirs(OUT, exist_ok=True)
times = json.load(open(f"{OUT}/times.json")) if os.path.exists(f"{OUT}/times.json") else {}
curve: list[dict] = []


def mark(name: str, t0: float) -> None:
    times[name] = round(time.perf_counter() - t0, 1)
    json.dump(times, open(f"{OUT}/times.json", "w"), indent=1)
    print(f"== {name}: {times[name]:.0f}s", flush=True)


model, processor = build_toy(0)
tower = model.model.vision_tower
t0 = time.perf_counter()
if os.path.exists(f"{OUT}/towerA.pt"):
    tower.load_state_dict(torch.load(f"{OUT}/towerA.pt"))
else:
    curve += pretrain_vision(model, steps=VSTEPS)
    torch.save(tower.state_dict(), f"{OUT}/towerA.pt")
    mark("stage_a", t0)
for p in tower.parameters():
    p.requires_grad_(False)
tower.eval()


def encode(name: str, count: int, frames: int, top: float, seed: int):
    path = f"{OUT}/{name}.pt"
    if os.path.exists(path):
        drawn, feats = torch.load(path)
    else:
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        drawn = [(int(rng.integers(TRAIN_SEEDS.stop)), float(rng.uniform(1.0, top))) for _ in range(count)]
        with torch.no_grad():
            feats = [vision_features(model, pixel_values(make_sample(s, frames, scale).frames)).half() for s, scale in drawn]
        torch.save((drawn, feats), path)
        mark(name, t0)
    return [(make_sample(s, frames, scale), f) for (s, scale), f in zip(drawn, feats)]


prompts = Prompts(model, processor)
tok = prompts.tokenizer
core = model.model


def phase(name: str, pool, steps: int, batch: int, lr: float, grid_of, seed: int, warmup: int) -> None:
    """Stage B steps on ``pool``; ``grid_of(frames, rng)`` picks each example's tokens a frame."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    rng = np.random.default_rng(seed)
    model.train()
    log = []
    t0 = time.perf_counter()
    for step in range(steps):
        rows = []
        for _ in range(batch):
            s, f = pool[int(rng.integers(len(pool)))]
            frames, answer = (list(range(len(s.frames))), s.answer) if rng.random() < 0.5 else shorter_clip(s, rng)
            grid = grid_of(frames, rng)
            visual = visual_tokens(model, f[frames].float(), grid)
            task = "describe" if rng.random() < DESC else s.kind
            if task == "describe":
                ids, targets, start = prompts.description(describe(s, frames), visual.shape[0])
            else:  # the option's text: stc.eval's parser reads it as that option
                text = s.options[LETTERS.index(answer)]
                ids, targets, start = prompts._teacher_forced(
                    prompts.ids[s.kind], tok(text, add_special_tokens=False)["input_ids"] + [prompts.end_id],
                    visual.shape[0])
            emb = core.get_input_embeddings()(ids)[0]
            rows.append((torch.cat([emb[:start], visual, emb[start + visual.shape[0]:]]), targets, task,
                         len(frames), grid))
        length = max(r[0].shape[0] for r in rows)
        embeds = torch.zeros(batch, length, rows[0][0].shape[1])
        mask = torch.zeros(batch, length, dtype=torch.long)
        positions = torch.zeros(batch, length, dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        for i, (emb, targets, *_) in enumerate(rows):  # left padding: the answers end every row
            n = emb.shape[0]
            embeds[i, length - n:], mask[i, length - n:], positions[i, length - n:] = emb, 1, torch.arange(n)
            labels[i, length - targets.numel():] = targets  # row p's hidden state predicts labels[p]
        hidden = core.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        logits = model.lm_head(hidden).float()
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(batch, length)
        per_row = (ce * (labels != -100)).sum(1) / (labels != -100).sum(1)
        loss = per_row.mean()
        _set_lr(opt, lr, step, warmup, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        seconds = round(time.perf_counter() - t0, 2)
        for (_, _, task, nf, grid), value in zip(rows, per_row.detach()):
            log.append((step, task, float(value)))
            curve.append({"stage": name, "step": step + 1, "seconds": seconds, "type": task, "frames": nf,
                          "grid": grid, "loss": round(float(value), 4)})
        if (step + 1) % 20 == 0:
            recent = [x for x in log if x[0] > step - 40]
            by = " ".join(f"{k} {np.mean([v for _, t, v in recent if t == k]):.2f}"
                          for k in (*TYPES, "describe") if any(t == k for _, t, _ in recent))
            print(f"{name} step {step + 1} {seconds:.0f}s {by}", flush=True)
        if (step + 1) % 100 == 0:
            torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/{name}-last.pt")
    model.eval()


def save_curve() -> None:
    fields = ["stage", "step", "seconds", "type", "frames", "grid", "loss", "shape_acc", "colour_acc"]
    new = not os.path.exists(f"{OUT}/loss.csv")
    with open(f"{OUT}/loss.csv", "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        if new:
            w.writeheader()
        w.writerows(curve)
    curve.clear()


save_curve()
pool4 = encode("pool4", P4, 4, 3.0, 7)
if os.path.exists(f"{OUT}/phase1.pt"):
    model.load_state_dict(torch.load(f"{OUT}/phase1.pt"), strict=False)
else:
    t0 = time.perf_counter()
    standardize_projector(model, [f.float() for _, f in pool4[:8]])
    phase("phase1", pool4, S1, B1, LR1, lambda frames, rng: 7, 7, 30)
    torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/phase1.pt")
    save_curve()
    mark("phase1", t0)
del pool4
pool16 = encode("pool16", P16, 16, 2.0, 8)
if os.path.exists(f"{OUT}/stage_b.pt"):
    model.load_state_dict(torch.load(f"{OUT}/stage_b.pt"), strict=False)
else:
    t0 = time.perf_counter()
    phase("phase2", pool16, S2, B2, LR2, lambda frames, rng: 14 if len(frames) <= BIGF and rng.random() < BIG else 7,
          9, 20)
    torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/stage_b.pt")
    save_curve()
    mark("phase2", t0)
if S3 and not os.path.exists(f"{OUT}/stage_b3.pt"):
    t0 = time.perf_counter()
    phase("phase3", pool16, S3, B3, LR3, lambda frames, rng: 14, 10, 10)
    torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/stage_b3.pt")
    save_curve()
    mark("phase3", t0)
print("total " + json.dumps(times), flush=True)
