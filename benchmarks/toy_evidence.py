"""What each compressor keeps of the evidence on the toy's held-out clips; not part of the tests.

The measured cause behind the toy accuracy table (README, "A toy model for offline accuracy"):
for each held-out clip, the answer's evidence is the only saturated colour in the clip (the
small shape, the flash, each red flash, the ball in every frame; backgrounds and distractors
are grey), so its pixels are read off the rendered frames. This script
encodes the clip with the toy model (`stc.load`), runs each method's stage 1 through
`VideoLLM.prepare` (no generation) and asks of every event whether a token that enters the LLM
still carries it:

    kept     a token kept as itself lies on the event (a 14x14 cell at least a quarter covered by
             the event's object), or a refilled cluster token whose members are at least half
             the event's cells (its mean is the event, not background);
    merged   cells of two different events end in the same token (two flashes that became one).

It also measures what the LLM's visual input is made of, whatever the question: the share of
the tokens entering the LLM that stand for objects (saturated cells: shapes, flashes, balls;
a kept token counts 1 if it lies on one, a refilled token the object share of its members),
against the same share of all the clip's tokens, and the share that are refilled cluster means
rather than tokens kept as themselves. The toy was trained on every token of a clip or on
pooled grids of it, so these two numbers say how far each method's input is from that.

Per type and method it prints the share of events kept, for count and motion the share of clips
in which every event is kept as a token of its own (each flash, each frame's ball: kept and never
merged with another, so the number of flashes or the ball's path is still in the input), and
how many tokens' worth of red enter the LLM for 1, 2, 3 and 4 flashes (`red_worth`): the toy
counts red, so what matters is whether that amount still grows with the number of flashes.
FastV prunes inside the LLM (after layer K), so it has no stage 1 to measure; it is left out.

    python benchmarks/toy_evidence.py [--per-type 25] [--retention 0.1 0.05 0.02 0.01] [--out runs/toy-evidence.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("stc", "stc-st", "stc-stage1", "fastvid", "flashvid", "holitom", "random", "uniform", "visionzip", "evs",
           "vidcom2")


def evidence_masks(sample) -> list[np.ndarray]:
    """For each event the answer rests on, a boolean [T, H, W] of its pixels, read off the
    rendered frames: saturated pixels are objects (the background and distractors are grey);
    for count only the red ones. colour: the small shape in every frame (one event); flash: the
    frame that holds a coloured shape; count: each frame with a red square (one event each);
    motion: the ball in each frame (one event per frame)."""
    x = sample.frames.astype(np.int16)
    saturated = (x.max(-1) - x.min(-1)) > 100
    red = (x[..., 0] > 150) & (x[..., 1] < 90) & (x[..., 2] < 90)
    mark = red if sample.kind == "count" else saturated
    frames = [f for f in range(len(x)) if mark[f].sum() > 50]
    if sample.kind == "colour":
        return [mark]
    out = []
    for f in frames:
        one = np.zeros_like(mark)
        one[f] = mark[f]
        out.append(one)
    return out


def covered_cells(mask: np.ndarray, grid: tuple[int, int]) -> set[int]:
    """The flat token indices (frame * gh * gw + cell) of the cells of the pooled grid that the
    pixels of `mask` [T, H, W] cover by at least a quarter."""
    gh, gw = grid
    _, h, w = mask.shape
    ys = (np.arange(h) * gh // h)[:, None]
    xs = (np.arange(w) * gw // w)[None, :]
    cell_of = ys * gw + xs  # [H, W] pooled cell of each pixel
    area = np.bincount(cell_of.ravel(), minlength=gh * gw)
    cells = set()
    for f in np.nonzero(mask.any(axis=(1, 2)))[0]:
        covered = np.bincount(cell_of[mask[f]], minlength=gh * gw)
        cells |= {int(f) * gh * gw + int(c) for c in np.nonzero(covered * 4 >= area)[0]}
    return cells


def event_cells(sample, grid: tuple[int, int]) -> list[set[int]]:
    """For each event (`evidence_masks`), the cells its pixels cover (`covered_cells`)."""
    return [covered_cells(mask, grid) for mask in evidence_masks(sample)]


def object_cells(sample, grid: tuple[int, int]) -> set[int]:
    """The cells of every saturated object of the clip, in every frame (`covered_cells`)."""
    x = sample.frames.astype(np.int16)
    return covered_cells((x.max(-1) - x.min(-1)) > 100, grid)


def survival(kept, events: list[set[int]]) -> tuple[list[bool], bool]:
    """(kept per event, any two events merged into one token) for one stage-1 result."""
    assignment = kept.assignment.cpu().numpy()
    selected = kept.selected.cpu().numpy()
    source = kept.source.cpu().numpy()
    members: dict[int, list[int]] = {}
    for token, slot in enumerate(assignment):
        if slot >= 0:
            members.setdefault(int(slot), []).append(token)
    alive, merged = [], False
    slots_of = []
    for cells in events:
        ok = False
        slots = {int(assignment[c]) for c in cells if assignment[c] >= 0}
        for slot in slots:
            if selected[slot] and int(source[slot]) in cells:
                ok = True
            elif not selected[slot] and 2 * sum(m in cells for m in members[slot]) >= len(members[slot]):
                ok = True
        alive.append(ok)
        slots_of.append(slots)
    for i in range(len(events)):
        for j in range(i + 1, len(events)):
            if slots_of[i] & slots_of[j]:
                merged = True
    return alive, merged


def red_worth(kept, red: set[int]) -> float:
    """How many tokens' worth of `red` cells enter the LLM: each output token counts the share of
    those cells in what it stands for (a kept token: 1 if it lies on one; a refilled token: the
    share of its cluster's members on them). With the object cells, the object tokens' worth."""
    assignment = kept.assignment.cpu().numpy()
    selected = kept.selected.cpu().numpy()
    source = kept.source.cpu().numpy()
    worth = 0.0
    for slot in range(len(selected)):
        if selected[slot]:
            worth += float(int(source[slot]) in red)
        else:
            members = np.nonzero(assignment == slot)[0]
            worth += float(np.mean([m in red for m in members])) if len(members) else 0.0
    return worth


def held_out_clips(llm, per_type: int):
    """The first ``per_type`` held-out clips of each type as `stc.eval` reads them (written to
    mp4, sampled back to 16 frames), with the prompt it builds: yields (sample, video, prompt);
    clears ``llm``'s feature cache after each clip and prints progress to stderr."""
    from stc.eval import build_prompt
    from stc.toy.data import FRAMES, TEST_SEEDS, TYPES, make_sample, write_mp4
    from stc.video import load_video

    seeds = list(TEST_SEEDS[: per_type * len(TYPES)])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stc-toy-clips-") as tmp:
        for i, seed in enumerate(seeds):
            sample = make_sample(seed)
            video = load_video(write_mp4(sample.frames, Path(tmp) / f"{seed}.mp4"), num_frames=FRAMES)
            yield sample, video, build_prompt(sample.question, sample.options)
            llm.clear_cache()
            print(f"{i + 1}/{len(seeds)} clips, {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "toy" / "llava-onevision"))
    parser.add_argument("--per-type", type=int, default=25, help="held-out clips per question type (default: 25)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--retention", type=float, nargs="+", default=[0.1, 0.05, 0.02, 0.01])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import stc
    from stc.toy.data import FRAMES, TEST_SEEDS, TYPES, make_sample

    assert all(len(cells) for cells in event_cells(make_sample(TEST_SEEDS[0]), (14, 14)))

    llm = stc.load(args.model, device="cpu", dtype="float32")
    stats: dict = {}  # (method, retention, type) -> {"events": [...], "merged": [...], "count_all": [...]}
    for sample, video, question in held_out_clips(llm, args.per_type):
        cells_of: dict = {}  # grid -> (event cells, object cells): read off the frames once per clip
        for method in args.methods:
            for retention in args.retention:
                prep = llm.prepare(video, question, stc.STCConfig(method=method, retention=retention))
                grid = prep.encoded.grid
                if grid not in cells_of:
                    cells_of[grid] = (event_cells(sample, grid), object_cells(sample, grid))
                events, objects = cells_of[grid]
                alive, merged = survival(prep.kept, events)
                cell = stats.setdefault(f"{method}|{retention}|{sample.kind}", {"events": [], "merged": [], "all": []})
                cell["events"].append(float(np.mean(alive)))
                cell["merged"].append(merged)
                cell["all"].append(all(alive) and not merged)
                n_out = len(prep.kept.selected)
                cell.setdefault("object_share", []).append(red_worth(prep.kept, objects) / n_out)
                cell.setdefault("refilled_share", []).append(float((~prep.kept.selected).sum()) / n_out)
                stats.setdefault("none|1.0|all", {}).setdefault("object_share", [])
                if retention == args.retention[0] and method == args.methods[0]:
                    stats["none|1.0|all"]["object_share"].append(len(objects) / len(prep.kept.assignment))
                if sample.kind == "count":
                    red = set().union(*events)
                    flashes = len(events)
                    cell.setdefault("worth", {}).setdefault(flashes, []).append(red_worth(prep.kept, red))
                    stats.setdefault("none|1.0|count", {}).setdefault("worth", {}).setdefault(flashes, [])
                    if retention == args.retention[0] and method == args.methods[0]:
                        stats["none|1.0|count"]["worth"][flashes].append(float(len(red)))

    print(f"# evidence kept in stage 1 (toy, {args.per_type} held-out clips per type, {FRAMES} frames)\n")
    for retention in args.retention:
        print(f"## {retention:.0%}\n")
        print("| method | " + " | ".join(f"{k} events kept (%)" for k in TYPES)
              + " | count: every flash its own token (%) | motion: every ball its own token (%) |")
        print("|---|" + "---|" * (len(TYPES) + 2))
        for method in args.methods:
            row = [stats[f"{method}|{retention}|{k}"] for k in TYPES]
            own = [100 * np.mean(stats[f"{method}|{retention}|{k}"]["all"]) for k in ("count", "motion")]
            print(f"| {method} | " + " | ".join(f"{100 * np.mean(r['events']):.0f}" for r in row)
                  + " | " + " | ".join(f"{x:.0f}" for x in own) + " |")
        print()
    print("## What enters the LLM: object tokens and refilled cluster means (% of its visual tokens, all clips)\n")
    print("| method | " + " | ".join(f"objects at {r:.0%}" for r in args.retention) + " | "
          + " | ".join(f"refilled at {r:.0%}" for r in args.retention) + " |")
    print("|---|" + "---|" * (2 * len(args.retention)))
    every = f"{100 * np.mean(stats['none|1.0|all']['object_share']):.1f}"
    print("| none (every token) | " + " | ".join([every] * len(args.retention) + ["0.0"] * len(args.retention)) + " |")
    for method in args.methods:
        shares = [[x for k in TYPES for x in stats[f"{method}|{r}|{k}"][key]] for key in ("object_share", "refilled_share")
                  for r in args.retention]
        print(f"| {method} | " + " | ".join(f"{100 * np.mean(v):.1f}" for v in shares) + " |")
    print()
    print("## count: red tokens' worth entering the LLM, by the true number of flashes (mean over clips)\n")
    print("| method | retention | " + " | ".join(f"{n} flash{'es' * (n > 1)}" for n in (1, 2, 3, 4)) + " |")
    print("|---|---|" + "---|" * 4)
    base = stats["none|1.0|count"]["worth"]
    print("| none (every token) | 100% | " + " | ".join(f"{np.mean(base[n]):.1f}" if base.get(n) else "-" for n in (1, 2, 3, 4)) + " |")
    for retention in args.retention[:2]:
        for method in args.methods:
            worth = stats[f"{method}|{retention}|count"]["worth"]
            print(f"| {method} | {retention:.0%} | " + " | ".join(f"{np.mean(worth[n]):.1f}" if worth.get(n) else "-"
                                                              for n in (1, 2, 3, 4)) + " |")
    print()
    if args.out is not None:
        summary = {key: {"events_kept": float(np.mean(v["events"])), "merged": float(np.mean(v["merged"])),
                         "all_distinct": float(np.mean(v["all"])), "clips": len(v["events"]),
                         "object_share": float(np.mean(v["object_share"])),
                         "refilled_share": float(np.mean(v["refilled_share"])),
                         **({"red_worth_by_flashes": {n: float(np.mean(w)) for n, w in v["worth"].items() if w}}
                            if "worth" in v else {})}
                   for key, v in stats.items() if "events" in v}
        summary["none|1.0|all"] = {"object_share": float(np.mean(stats["none|1.0|all"]["object_share"]))}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
