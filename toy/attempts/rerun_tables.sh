#!/bin/bash
# Every toy table of README / docs/toy-accuracy.md on one checkpoint, in two lanes of one thread
# (the eleventh session's list; ~70 min on 2 cores). Run from the repository root with .venv:
#   bash toy/attempts/rerun_tables.sh [CHECKPOINT]     # default toy/llava-onevision
# Needs runs/toy-test (python -m stc.toy.data runs/toy-test). Writes runs/toy-eval-{a,b},
# runs/toy-cons-{a,b}, runs/motion-{original,contiguous}, runs/toy-evidence.json and logs in
# runs/; then `python -m stc.eval.paired runs/toy-eval-a runs/toy-eval-b` (and the same for
# runs/toy-cons-*) gives the paired tables; screenshots: HF_HUB_OFFLINE=1 python docs/screenshots.py.
set -euo pipefail
M=${1:-toy/llava-onevision}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
test -f runs/toy-test/manifest.jsonl || { echo "runs/toy-test is missing: python -m stc.toy.data runs/toy-test" >&2; exit 2; }
grep '"type": "motion"' runs/toy-test/manifest.jsonl > runs/toy-test/motion.jsonl
E="python -m stc.eval runs/toy-test/manifest.jsonl --model $M --frames 16 --no-progress"
S="python benchmarks/toy_object_share.py --model $M --per-type 40 --threads 1"
(
  python toy/attempts/write_accuracy.py "$M" > runs/lane1.acc.log 2>&1
  $E --methods none stc stc-stage1 fastv fastvid --out runs/toy-eval-a > runs/lane1.a.log 2>&1
  $E --constrained --methods none stc stc-st stc-stage1 fastv fastvid --out runs/toy-cons-a > runs/lane1.ca.log 2>&1
  python benchmarks/toy_evidence.py --model "$M" --per-type 20 --threads 1 --out runs/toy-evidence.json > runs/lane1.evidence.log 2>&1
) &
(
  python toy/attempts/validate.py "$M" runs/val.json 1 > runs/lane2.val.log 2>&1
  $E --methods stc-st flashvid holitom visionzip evs vidcom2 uniform random --out runs/toy-eval-b > runs/lane2.b.log 2>&1
  $E --constrained --methods flashvid holitom visionzip evs vidcom2 uniform random --out runs/toy-cons-b > runs/lane2.cb.log 2>&1
  for p in original contiguous; do
    python -m stc.eval runs/toy-test/motion.jsonl --model "$M" --frames 16 --no-progress --methods stc holitom uniform \
      --retention 0.1 --positions $p --out runs/motion-$p > runs/lane2.motion-$p.log 2>&1
  done
  $S --retention 0.02 --shares 0 0.012 0.1 0.2 0.4 0.6 > runs/os1-2.log 2>&1
  $S --retention 0.01 --shares 0 0.012 0.1 0.2 0.4 0.6 > runs/os1-1.log 2>&1
  $S --retention 0.02 --shares --centres stc-stage1 fastvid > runs/os2.log 2>&1
  $S --retention 0.02 --shares 0 0.15 --background distinct > runs/os3.log 2>&1
) &
wait
echo "done: $M"
