"""Issue 20 pilot: does stage B learn the questions with batches on short clips?

Run on a tree with toy-v2.patch applied (`git apply toy/attempts/toy-v2.patch`):

    python toy/attempts/stage_b_pilot.py runs/pilot            # answers as option letters
    WORDS=1 python toy/attempts/stage_b_pilot.py runs/pilot    # answers as the option's text

Stage A (`pretrain_vision`, 300 steps) once, saved as <out>/towerA.pt; then POOL 4-frame training
clips (objects 1-3x their size) through the frozen tower, cached in <out>/pool.pt; then STEPS
steps of stage B, BATCH examples each (left-padded): a clip of the pool, whole (half the time) or
a `shorter_clip`, pooled to GRID x GRID tokens a frame; its caption with probability DESC, else its
question. Prints the mean loss per question type and for captions every 20 steps. Nothing here
reads a compressor's output.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from stc.toy.data import LETTERS, TRAIN_SEEDS, TYPES, make_sample
from stc.toy.train import (Prompts, _set_lr, build_toy, describe, pixel_values, pretrain_vision, shorter_clip,
                           standardize_projector, vision_features, visual_tokens)

OUT = sys.argv[1] if len(sys.argv) > 1 else "runs/pilot"
env = os.environ.get
BATCH, STEPS, LR = int(env("BATCH", "32")), int(env("STEPS", "600")), float(env("LR", "2e-3"))
GRID, POOL, DESC, WORDS = int(env("GRID", "7")), int(env("POOL", "800")), float(env("DESC", "0.3")), env("WORDS") == "1"
SAVE_EVERY = int(env("SAVE_EVERY", "100"))
torch.set_num_threads(int(env("THREADS", "2")))
os.makedirs(OUT, exist_ok=True)

model, processor = build_toy(0)
tower = model.model.vision_tower
if os.path.exists(f"{OUT}/towerA.pt"):
    tower.load_state_dict(torch.load(f"{OUT}/towerA.pt"))
else:
    pretrain_vision(model, steps=300)
    torch.save(tower.state_dict(), f"{OUT}/towerA.pt")
for p in tower.parameters():
    p.requires_grad_(False)
tower.eval()

rng = np.random.default_rng(7)
t0 = time.perf_counter()
if os.path.exists(f"{OUT}/pool.pt"):
    drawn, feats = torch.load(f"{OUT}/pool.pt")
else:
    drawn = [(int(rng.integers(TRAIN_SEEDS.stop)), float(rng.uniform(1.0, 3.0))) for _ in range(POOL)]
    with torch.no_grad():
        feats = [vision_features(model, pixel_values(make_sample(seed, 4, scale).frames)).half() for seed, scale in drawn]
    torch.save((drawn, feats), f"{OUT}/pool.pt")
pool = [(make_sample(seed, 4, scale), f) for (seed, scale), f in zip(drawn, feats)]
print(f"pool {len(pool)} clips {time.perf_counter() - t0:.0f}s", flush=True)

standardize_projector(model, [f.float() for _, f in pool[:8]])
prompts = Prompts(model, processor)
tok = prompts.tokenizer
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.98), weight_decay=0.01)
core = model.model
model.train()


def chance(kind: str) -> float:
    """The mean per-token loss of a model that knows the answer's format but not the clip."""
    if not WORDS:
        return math.log(4) / 2
    options = [tok(o, add_special_tokens=False)["input_ids"] for o in make_sample(TYPES.index(kind), 4).options]
    firsts = len({ids[0] for ids in options})
    return float(np.mean([math.log(firsts) / (len(ids) + 1) for ids in options]))


CHANCE = {kind: chance(kind) for kind in TYPES}
print("chance " + " ".join(f"{k} {v:.2f}" for k, v in CHANCE.items()), flush=True)
log = []
t0 = time.perf_counter()
for step in range(STEPS):
    rows = []
    for _ in range(BATCH):
        s, f = pool[int(rng.integers(len(pool)))]
        frames, answer = (list(range(len(s.frames))), s.answer) if rng.random() < 0.5 else shorter_clip(s, rng)
        visual = visual_tokens(model, f[frames].float(), GRID)
        task = "describe" if rng.random() < DESC else s.kind
        if task == "describe":
            ids, targets, start = prompts.description(describe(s, frames), visual.shape[0])
        elif WORDS:  # the option's text: stc.eval's parser reads it as that option
            text = s.options[LETTERS.index(answer)]
            ids, targets, start = prompts._teacher_forced(prompts.ids[s.kind], tok(text, add_special_tokens=False)["input_ids"]
                                                          + [prompts.end_id], visual.shape[0])
        else:
            ids, targets, start = prompts.example(s.kind, answer, visual.shape[0])
        emb = core.get_input_embeddings()(ids)[0]
        rows.append((torch.cat([emb[:start], visual, emb[start + visual.shape[0]:]]), targets, task))
    length = max(r[0].shape[0] for r in rows)
    embeds = torch.zeros(BATCH, length, rows[0][0].shape[1])
    mask = torch.zeros(BATCH, length, dtype=torch.long)
    positions = torch.zeros(BATCH, length, dtype=torch.long)
    labels = torch.full((BATCH, length), -100, dtype=torch.long)
    for i, (emb, targets, _) in enumerate(rows):  # left padding: the answers end every row
        n = emb.shape[0]
        embeds[i, length - n:], mask[i, length - n:], positions[i, length - n:] = emb, 1, torch.arange(n)
        labels[i, length - targets.numel():] = targets  # row p's hidden state predicts labels[p]
    hidden = core.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    logits = model.lm_head(hidden).float()
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(BATCH, length)
    per_row = (ce * (labels != -100)).sum(1) / (labels != -100).sum(1)
    loss = per_row.mean()
    _set_lr(opt, LR, step, 30, STEPS)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    log += [(step, task, float(value)) for (_, _, task), value in zip(rows, per_row.detach())]
    if (step + 1) % 20 == 0:
        recent = [x for x in log if x[0] > step - 40]
        by = " ".join(f"{k} {np.mean([v for _, t, v in recent if t == k]):.2f}"
                      for k in (*TYPES, "describe") if any(t == k for _, t, _ in recent))
        print(f"step {step + 1} {time.perf_counter() - t0:.0f}s {by}", flush=True)
    if (step + 1) % SAVE_EVERY == 0:  # a checkpoint to evaluate (pilot_eval.py) if the run is cut short
        torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/stage_b.pt")
torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/stage_b.pt")
