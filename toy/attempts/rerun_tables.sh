#!/bin/bash
# Every toy table of README / docs/toy-accuracy.md on one checkpoint, in two lanes of one thread
# (the eleventh session's list; ~70 min on 2 cores). Run from the repository root with .venv:
#   bash toy/attempts/rerun_tables.sh [CHECKPOINT [OUT]]   # default toy/llava-onevision, runs
#   bash toy/attempts/rerun_tables.sh toy/attempts/place-term runs/old   # the previous weights
# Needs runs/toy-test (python -m stc.toy.data runs/toy-test). Writes OUT/toy-eval-{a,b},
# OUT/toy-cons-{a,b}, OUT/motion-{original,contiguous}, OUT/toy-evidence.json and logs in OUT/;
# then `python -m stc.eval.paired OUT/toy-eval-a OUT/toy-eval-b` (and the same for
# OUT/toy-cons-*) gives the paired tables, `--also runs/old/toy-eval-a runs/old/toy-eval-b` both
# checkpoints' differences; `python toy/attempts/tables.py` rebuilds docs/toy-accuracy.md from
# OUT=runs and runs/old (and checks README's toy tables against them; --check writes nothing);
# screenshots: HF_HUB_OFFLINE=1 python docs/screenshots.py.
set -euo pipefail
M=${1:-toy/llava-onevision}
O=${2:-runs}
mkdir -p "$O"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
test -f runs/toy-test/manifest.jsonl || { echo "runs/toy-test is missing: python -m stc.toy.data runs/toy-test" >&2; exit 2; }
grep '"type": "motion"' runs/toy-test/manifest.jsonl > runs/toy-test/motion.jsonl
E="python -m stc.eval runs/toy-test/manifest.jsonl --model $M --frames 16 --no-progress"
S="python benchmarks/toy_object_share.py --model $M --per-type 40 --threads 1"
(
  python toy/attempts/write_accuracy.py "$M" > $O/lane1.acc.log 2>&1
  $E --methods none stc stc-stage1 fastv fastvid --out $O/toy-eval-a > $O/lane1.a.log 2>&1
  $E --constrained --methods none stc stc-st stc-stage1 fastv fastvid --out $O/toy-cons-a > $O/lane1.ca.log 2>&1
  python benchmarks/toy_evidence.py --model "$M" --per-type 20 --threads 1 --out $O/toy-evidence.json > $O/lane1.evidence.log 2>&1
) &
(
  python toy/attempts/validate.py "$M" $O/val.json 1 > $O/lane2.val.log 2>&1
  $E --methods stc-st flashvid holitom visionzip evs vidcom2 uniform random --out $O/toy-eval-b > $O/lane2.b.log 2>&1
  $E --constrained --methods flashvid holitom visionzip evs vidcom2 uniform random --out $O/toy-cons-b > $O/lane2.cb.log 2>&1
  for p in original contiguous; do
    python -m stc.eval runs/toy-test/motion.jsonl --model "$M" --frames 16 --no-progress --methods stc holitom uniform \
      --retention 0.1 --positions $p --out $O/motion-$p > $O/lane2.motion-$p.log 2>&1
  done
  $S --retention 0.02 --shares 0 0.012 0.1 0.2 0.4 0.6 > $O/os1-2.log 2>&1
  $S --retention 0.01 --shares 0 0.012 0.1 0.2 0.4 0.6 > $O/os1-1.log 2>&1
  $S --retention 0.02 --shares --centres stc-stage1 fastvid > $O/os2.log 2>&1
  $S --retention 0.02 --shares 0 0.15 --background distinct > $O/os3.log 2>&1
) &
wait
echo "done: $M"
