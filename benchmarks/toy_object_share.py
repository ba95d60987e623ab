"""Why does the toy's answer text break on short inputs? Interventions, not part of the tests.

`benchmarks/toy_evidence.py` finds that the methods whose answers the toy cannot parse hand the
LLM inputs whose object share (tokens on the clip's saturated shapes) is 5-50%, against 1.2% in
every clip the toy was trained on, and that random selection and uniform pooling, at the natural
share, give almost no unparsed answers. That is an association across methods that differ in
much else. This script sets the input itself: a diagnostic selector (registered here only, not
a method of the package) keeps ``budget`` tokens, each as itself (nothing merged), of which
``round(share * budget)`` are drawn at random among the clip's object cells (read off the
rendered frames, as toy_evidence does) and the rest among the other cells: at random
(``--background random``), or the ones least like the clip's mean token (``distinct``: what a
selector that removes redundancy keeps of a background). Everything else is the table's path:
`VideoLLM.answer`, the prompt `stc.eval` builds, `parse_answer`, 16 new tokens at most.

The second intervention (``--centres``) keeps a method's own stage 1 (the same tokens, the same
positions, the same budget) and changes one thing: every refilled or merged output token (a
cluster's mean) is replaced by the input token at its own position (the cluster's centre, as
itself). If the unparsed answers fall, the means are what the toy cannot read.

    python benchmarks/toy_object_share.py [--per-type 20] [--retention 0.02] [--shares 0 0.012 0.1 0.2 0.4]
        [--background random|distinct] [--centres stc-stage1 fastvid]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("toy_evidence", ROOT / "benchmarks" / "toy_evidence.py")
toy_evidence = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_evidence)

CURRENT: dict = {"objects": set()}  # the clip being answered: its object cells (flat indices)


def object_share_selector(share: float, seed: int = 0, background: str = "random"):
    """A stage 1 that keeps ``budget`` tokens as themselves, ``round(share * budget)`` of them
    (at most all) on CURRENT["objects"], the rest elsewhere: at random (``background="random"``)
    or the non-object tokens least like the clip's mean token ("distinct": lowest cosine to it,
    what a redundancy-removing selector keeps of a background); features [S, N, D]."""
    from stc.methods._common import assemble

    def stage1(features, scores, budget, *, grid, config, options):
        s, n, d = features.shape
        objects = torch.tensor(sorted(CURRENT["objects"]), dtype=torch.long)
        on = torch.zeros(s * n, dtype=torch.bool)
        on[objects] = True
        generator = torch.Generator().manual_seed(seed)
        pick_on = objects[torch.randperm(len(objects), generator=generator)][: round(share * budget)]
        rest = torch.nonzero(~on).squeeze(1)
        if background == "distinct":
            flat = features.reshape(s * n, d).float()
            cos = torch.nn.functional.cosine_similarity(flat[rest], flat.mean(0, keepdim=True).to(flat), dim=-1)
            rest = rest[torch.argsort(cos.cpu(), stable=True)]
        else:
            rest = rest[torch.randperm(len(rest), generator=generator)]
        pick_off = rest[: budget - len(pick_on)]
        keep = torch.cat([pick_on, pick_off]).to(features.device)
        assignment = torch.full((s * n,), -1, dtype=torch.long, device=features.device)
        assignment[keep] = torch.arange(budget, device=features.device)
        return assemble(features.reshape(s * n, d), keep, assignment)

    return stage1


def centres_of(base):
    """The `Method` ``base`` with every refilled output token replaced by its centre's own input
    token (`Compressed.source`); selected tokens, positions and budget unchanged."""
    import dataclasses

    from stc.results import Compressed

    def stage1(features, scores, budget, *, grid, config, options):
        c = base.compress(features, scores, budget, grid=grid, config=config.replace(method=base.name))
        flat = features.reshape(-1, features.shape[-1])
        tokens = c.tokens.clone()
        tokens[~c.selected] = flat[c.source[~c.selected]].to(tokens.dtype)
        return Compressed(tokens, c.source, c.assignment, c.selected)

    return dataclasses.replace(base, name=f"{base.name}-centres", stage1=stage1, stream=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "toy" / "llava-onevision"))
    parser.add_argument("--per-type", type=int, default=20)
    parser.add_argument("--retention", type=float, default=0.02)
    parser.add_argument("--shares", type=float, nargs="*", default=[0.0, 0.012, 0.1, 0.2, 0.4])
    parser.add_argument("--background", choices=("random", "distinct"), default="random",
                        help="the diagnostic selector's other tokens: random non-object cells, or the least typical ones")
    parser.add_argument("--centres", nargs="*", default=[], help="methods to run as they are and with centres for means")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write every answer as JSON lines here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import stc
    from stc.eval.parsing import parse_answer
    from stc.eval.text import LETTERS, norm
    from stc.methods import get_method, register
    from stc.methods.base import Method
    from stc.toy.data import FRAMES, TYPES

    names = {}
    for share in args.shares:
        name = f"objects-{share:g}"
        register(Method(name, "diagnostic (benchmarks/toy_object_share.py)", f"{share:.1%} of the budget on objects",
                        stage1=object_share_selector(share, background=args.background)))
        names[share] = name
    for base in args.centres:
        register(centres_of(get_method(base)))
        names[base] = base
        names[f"{base} (centres)"] = f"{base}-centres"
    llm = stc.load(args.model, device="cpu", dtype="float32")
    records = []
    for sample, video, question in toy_evidence.held_out_clips(llm, args.per_type):
        CURRENT["objects"] = toy_evidence.object_cells(sample, (14, 14))
        right = norm(sample.options[LETTERS.index(sample.answer)])
        for share, name in names.items():
            answer = llm.answer(video, question, config=stc.STCConfig(method=name, retention=args.retention),
                                max_new_tokens=16, num_frames=FRAMES)
            parsed = parse_answer(answer.text, sample.options)
            records.append({"seed": sample.seed, "type": sample.kind, "share": share, "raw": answer.text, "parsed": parsed,
                            "correct": parsed == sample.answer, "objects_in_clip": len(CURRENT["objects"]),
                            "run_on_right": parsed is None and norm(answer.text).startswith(right),
                            "visual_tokens": answer.stats.visual_tokens_stage1})

    def header(first: str) -> None:
        print(f"| {first} | unparsed | of which the right option run on | accuracy (%) | "
              + " | ".join(f"{k} (%)" for k in TYPES) + " | most common answers |")
        print("|---|---|---|---|" + "---|" * len(TYPES) + "---|")

    budget = records[0]["visual_tokens"] if records else 0
    if args.shares:
        print(f"# the toy's answers at {args.retention:.0%} ({budget} tokens kept as themselves), by the share of them "
              f"on objects, the rest {args.background} ({args.per_type} held-out clips per type)\n")
        header("objects in the input")
    for share in names:
        if share == next(iter(args.centres), None):
            print(f"\n# {', '.join(args.centres)} as they are and with each refilled token replaced by its centre, "
                  f"at {args.retention:.0%}\n")
            header("method")
        rs = [r for r in records if r["share"] == share]
        unparsed = sum(r["parsed"] is None for r in rs)
        acc = lambda g: 100 * sum(r["correct"] for r in g) / max(len(g), 1)
        common = Counter(norm(r["raw"]) for r in rs if r["parsed"] is None).most_common(2)
        label = share if isinstance(share, str) else f"{share:.1%}"
        print(f"| {label} | {unparsed} of {len(rs)} | {sum(r['run_on_right'] for r in rs)} | {acc(rs):.1f} | "
              + " | ".join(f"{acc([r for r in rs if r['type'] == k]):.0f}" for k in TYPES)
              + f" | {', '.join(repr(t) for t, _ in common)} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
