"""Issue 20: held-out accuracy of a stage-B pilot (`stage_b_pilot.py`'s <out>/stage_b.pt).

Run on a tree with toy-v2.patch applied, like the pilot:

    python toy/attempts/pilot_eval.py runs/pilot [FRAMES] [GRID ...]

Builds the toy (seed 0), loads <out>/towerA.pt and <out>/stage_b.pt (env CKPT: another file), then answers the held-out
clips (`TEST_SEEDS`: 100 a type, never drawn by the trainer) with FRAMES frames (default 4, as
the pilot trained) at each GRID (default 7, the pilot's; 14 is LLaVA-OneVision's own pooling,
which the pilot never saw). Greedy decoding of at most 8 tokens; the answer is parsed by
`stc.eval`'s parser (an option letter or an option's text). Prints accuracy per type with a
95% Wilson interval and the unparsed count. No compressor is involved.
"""
import sys
import time

import torch

from stc.eval.parsing import parse_answer
from stc.eval.summary import wilson
from stc.toy.data import LETTERS, TEST_SEEDS, TYPES, make_sample
from stc.toy.train import Prompts, build_toy, pixel_values, vision_features, visual_tokens

OUT = sys.argv[1] if len(sys.argv) > 1 else "runs/pilot"
FRAMES = int(sys.argv[2]) if len(sys.argv) > 2 else 4
GRIDS = [int(g) for g in sys.argv[3:]] or [7]
BATCH = 25
LIMIT = int(__import__("os").environ.get("LIMIT", len(TEST_SEEDS)))  # a quick look: the first LIMIT seeds
torch.set_num_threads(2)

model, processor = build_toy(0)
model.model.vision_tower.load_state_dict(torch.load(f"{OUT}/towerA.pt"))
CKPT = __import__("os").environ.get("CKPT", "stage_b.pt")  # another checkpoint file in <out>
missing, unexpected = model.load_state_dict(torch.load(f"{OUT}/{CKPT}"), strict=False)
assert not unexpected and all("vision_tower" in k for k in missing), (missing, unexpected)
model.eval()
prompts = Prompts(model, processor)
tok = prompts.tokenizer
core = model.model

t0 = time.perf_counter()
with torch.no_grad():
    samples = [make_sample(seed, FRAMES) for seed in TEST_SEEDS[:LIMIT]]
    feats = [vision_features(model, pixel_values(s.frames)) for s in samples]
print(f"{len(samples)} held-out clips of {FRAMES} frames encoded in {time.perf_counter() - t0:.0f}s", flush=True)


@torch.no_grad()
def answer_batch(rows: list[torch.Tensor], steps: int = 8) -> list[str]:
    """Greedy continuation of each row of input embeddings [L_i, D] (left-padded together)."""
    generated = [[] for _ in rows]
    done = [False] * len(rows)
    for _ in range(steps):
        length = max(r.shape[0] for r in rows)
        embeds = torch.zeros(len(rows), length, rows[0].shape[1])
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        positions = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            embeds[i, length - r.shape[0]:], mask[i, length - r.shape[0]:] = r, 1
            positions[i, length - r.shape[0]:] = torch.arange(r.shape[0])
        hidden = core.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        nxt = model.lm_head(hidden[:, -1]).argmax(-1)
        emb = core.get_input_embeddings()(nxt)
        for i in range(len(rows)):
            if not done[i]:
                if int(nxt[i]) == prompts.end_id:
                    done[i] = True
                else:
                    generated[i].append(int(nxt[i]))
            rows[i] = torch.cat([rows[i], emb[i][None]])
        if all(done):
            break
    return [tok.decode(g) for g in generated]


for grid in GRIDS:
    t0 = time.perf_counter()
    results = {kind: [] for kind in TYPES}
    for start in range(0, len(samples), BATCH):
        rows = []
        for s, f in zip(samples[start:start + BATCH], feats[start:start + BATCH]):
            visual = visual_tokens(model, f, grid)
            before, after = prompts.ids[s.kind]
            ids = torch.tensor([before + [prompts.video_id] * visual.shape[0] + after])
            emb = core.get_input_embeddings()(ids)[0]
            rows.append(torch.cat([emb[:len(before)], visual, emb[len(before) + visual.shape[0]:]]))
        with torch.no_grad():
            texts = answer_batch(rows)
        for s, text in zip(samples[start:start + BATCH], texts):
            results[s.kind].append((parse_answer(text, s.options), s.answer, text))
    print(f"grid {grid} ({grid * grid} tokens a frame), {FRAMES} frames, {time.perf_counter() - t0:.0f}s")
    print("| type | n | accuracy (95% interval) | unparsed | answer letters given |")
    print("|---|---|---|---|---|")
    for kind, rs in results.items():
        right = sum(p == a for p, a, _ in rs)
        lo, hi = wilson(right, len(rs)) or (0.0, 100.0)
        given = {letter: sum(p == letter for p, _, _ in rs) for letter in LETTERS}
        print(f"| {kind} | {len(rs)} | {100 * right / len(rs):.1f} ({lo:.1f}-{hi:.1f}) | "
              f"{sum(p is None for p, _, _ in rs)} | {given} |")
    print("examples:", [r[2] for r in results[TYPES[0]][:3]], flush=True)
