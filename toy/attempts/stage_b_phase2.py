"""Issue 20, phase 2 of the stage-B pilot: from 4-frame clips to 16.

Run on a tree with toy-v2.patch applied, after `stage_b_pilot.py` wrote <pilot>/stage_b.pt:

    python toy/attempts/stage_b_phase2.py encode <out> [POOL]        # 16-frame clips through the frozen tower
    python toy/attempts/stage_b_phase2.py train <out> <pilot>        # then fine-tune from the pilot

``encode`` needs only <out>/towerA.pt (copy or link the pilot's): POOL (default 300) training clips of
16 frames (objects 1-2x their size) through the frozen tower, cached in <out>/pool16.pt. ``train``
starts from <pilot>/stage_b.pt and runs STEPS steps of BATCH examples: a pool clip, whole or a
`shorter_clip` of it, its caption with probability DESC, else its question answered with the
option's text; a clip of at most 4 frames goes in at grid 14 (LLaVA-OneVision's own 196 tokens a
frame) with probability BIG, anything else at grid 7. Writes <out>/stage_b.pt (and the tower) for
`pilot_eval.py`. Nothing here reads a compressor's output.
"""
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from stc.toy.data import LETTERS, TRAIN_SEEDS, TYPES, make_sample
from stc.toy.train import (Prompts, _set_lr, build_toy, describe, pixel_values, shorter_clip, vision_features,
                           visual_tokens)

MODE, OUT = sys.argv[1], sys.argv[2]
env = os.environ.get
BATCH, STEPS, LR = int(env("BATCH", "16")), int(env("STEPS", "500")), float(env("LR", "1e-3"))
DESC, BIG = float(env("DESC", "0.2")), float(env("BIG", "0.3"))
torch.set_num_threads(int(env("THREADS", "2")))

model, processor = build_toy(0)
tower = model.model.vision_tower
tower.load_state_dict(torch.load(f"{OUT}/towerA.pt"))
for p in tower.parameters():
    p.requires_grad_(False)
tower.eval()

if MODE == "encode":
    pool = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    rng = np.random.default_rng(8)
    drawn = [(int(rng.integers(TRAIN_SEEDS.stop)), float(rng.uniform(1.0, 2.0))) for _ in range(pool)]
    t0 = time.perf_counter()
    feats = []
    with torch.no_grad():
        for i, (seed, scale) in enumerate(drawn):
            feats.append(vision_features(model, pixel_values(make_sample(seed, 16, scale).frames)).half())
            if (i + 1) % 50 == 0:
                print(f"encoded {i + 1} clips {time.perf_counter() - t0:.0f}s", flush=True)
    torch.save((drawn, feats), f"{OUT}/pool16.pt")
    sys.exit(0)

PILOT = sys.argv[3]
state = torch.load(f"{PILOT}/stage_b.pt")
model.load_state_dict(state, strict=False)
drawn, feats = torch.load(f"{OUT}/pool16.pt")
pool = [(make_sample(seed, 16, scale), f) for (seed, scale), f in zip(drawn, feats)]
prompts = Prompts(model, processor)
tok = prompts.tokenizer
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.98), weight_decay=0.01)
core = model.model
model.train()
rng = np.random.default_rng(9)
log = []
t0 = time.perf_counter()
for step in range(STEPS):
    rows = []
    for _ in range(BATCH):
        s, f = pool[int(rng.integers(len(pool)))]
        frames, answer = (list(range(len(s.frames))), s.answer) if rng.random() < 0.5 else shorter_clip(s, rng)
        grid = 14 if len(frames) <= 4 and rng.random() < BIG else 7
        visual = visual_tokens(model, f[frames].float(), grid)
        task = "describe" if rng.random() < DESC else s.kind
        if task == "describe":
            ids, targets, start = prompts.description(describe(s, frames), visual.shape[0])
        else:
            text = s.options[LETTERS.index(answer)]
            ids, targets, start = prompts._teacher_forced(prompts.ids[s.kind], tok(text, add_special_tokens=False)["input_ids"]
                                                          + [prompts.end_id], visual.shape[0])
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
        labels[i, length - targets.numel():] = targets
    hidden = core.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
    logits = model.lm_head(hidden).float()
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(BATCH, length)
    per_row = (ce * (labels != -100)).sum(1) / (labels != -100).sum(1)
    loss = per_row.mean()
    _set_lr(opt, LR, step, 20, STEPS)
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
torch.save({k: v for k, v in model.state_dict().items() if "vision_tower" not in k}, f"{OUT}/stage_b.pt")
