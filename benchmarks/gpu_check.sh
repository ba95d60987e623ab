#!/usr/bin/env bash
# The GPU check: the paper's efficiency table on one CUDA GPU, then the processor-equivalence
# test. Offline (no hub, no download): LLaVA-OneVision-7B at its true size (8.03B parameters)
# with random weights made on the GPU, bf16, sdpa, 32 frames; the baseline, stc 10%/5% and
# 2%/1% and every other method of stc.list_methods() at 10% and 2%, each row the median of 3
# rounds. Needs one GPU with >= 24 GiB (16 GiB of weights). Its parts, run one by one on one H200
# on 2026-12-04 (README, "GPU check"; docs/gpu/): the bench 184 s, the stage-1 micro-benchmark
# ~40 s, the tiny Qwen3-VL ~30 s, the processor test 20 s. The bench prints its own wall time.
#
#   benchmarks/gpu_check.sh               python -m stc.bench --paper --device cuda, then
#                                         python -m pytest -q tests/test_processors.py -rs
#   benchmarks/gpu_check.sh --cpu         the same code on CPU, tiny size, 8 frames, 16 new tokens
#   --bench-only                          skip the processor-equivalence test
#   --stage1-only                         only the stage-1 micro-benchmark (below), then exit
#   --no-install                          never pip-install a missing package (see below)
#   anything after --                     passed to stc.bench (e.g. -- --frames 64)
#
# Python: $PYTHON, else the first of .venv/bin/python, python3, python whose torch fits the
# device (CUDA build for the GPU check). Missing Python packages other than torch/torchvision
# are pip-installed into that environment (the check's only write outside the repo; pip's
# cache is off); torch and torchvision are never installed: a torchvision that does not match
# the installed torch fails to import, so the script says which one to install instead of
# guessing. Everything the check writes stays in runs/gpu-check/ (git-ignored; $STC_GPU_CHECK_OUT
# moves it): the bench output (bench-<device>.md), the test log, the caches of HF / torch.
#
# Stage-1 micro-benchmark (after the bench): stc, HoliTom, FastVID and VisionZip compress the
# same features in one process, round-robin, 20 rounds after a warm-up, ms per video with CUDA
# events (perf_counter on CPU), and their ratios, host syncs per call on CUDA, and the floor of any
# global pairwise pass (--floor): benchmarks/compress_speed.py on the paper's
# setting (LLaVA-OneVision-7B's D = 3584, 32 frames of the bench's clip, 2% and 10%); --cpu:
# the tiny model's features, 8 frames. Written to stage1-<device>.md.
#
# Exit status: 0 everything ran and passed; 1 the bench or the test failed; 2 this machine
# cannot run the check (no CUDA, a missing package); 3 the bench passed but the processor test
# could not compare (torchvision missing or mismatched, or every test skipped).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

device=cuda
run_tests=1
stage1_only=0
install=1
bench_extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu) device=cpu ;;
        --bench-only) run_tests=0 ;;
        --stage1-only) stage1_only=1; run_tests=0 ;;
        --no-install) install=0 ;;
        --) shift; bench_extra=("$@"); break ;;
        -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

OUT="${STC_GPU_CHECK_OUT:-$ROOT/runs/gpu-check}"
mkdir -p "$OUT/cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
export HF_HOME="$OUT/cache/huggingface" XDG_CACHE_HOME="$OUT/cache" MPLCONFIGDIR="$OUT/cache/matplotlib"
export TORCHINDUCTOR_CACHE_DIR="$OUT/cache/inductor" TRITON_CACHE_DIR="$OUT/cache/triton"
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

say() { echo "gpu_check: $*" >&2; }

# -- the interpreter ----------------------------------------------------------------------------
# One Python call per candidate: it exits 0 when its torch fits the device and then describes
# itself; a second lists the missing packages (found without importing them: gradio is slow).
probe='import sys, torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    print(f"candidate:  {sys.executable}: torch {torch.__version__}, built for CUDA {torch.version.cuda}", file=sys.stderr)
    sys.exit(1)
print(f"gpu_check: python {sys.version.split()[0]} at {sys.executable}, torch {torch.__version__} (CUDA {torch.version.cuda})", file=sys.stderr)'
PY=""
tried=" "
for candidate in ${PYTHON:-} "$ROOT/.venv/bin/python" python3 python; do
    resolved="$(command -v "$candidate" 2>/dev/null)" || continue
    [[ "$tried" == *" $resolved "* ]] && continue
    tried+="$resolved "
    if "$candidate" -c "$probe" "$device" 2>"$OUT/probe.txt"; then PY="$candidate"; cat "$OUT/probe.txt" >&2; break; fi
    if grep -q '^candidate:' "$OUT/probe.txt"; then
        sed -n 's/^candidate://p' "$OUT/probe.txt" >>"$OUT/probe-failures.txt"
    else
        echo "  $resolved: no usable torch ($(tail -n 1 "$OUT/probe.txt"))" >>"$OUT/probe-failures.txt"
    fi
done
if [[ -z "$PY" ]]; then
    if [[ "$device" == cuda ]]; then
        say "no Python here has a torch that sees a CUDA GPU:"
        cat "$OUT/probe-failures.txt" >&2 2>/dev/null
        command -v nvidia-smi >/dev/null 2>&1 || say "nvidia-smi is not on PATH either: is this a GPU machine?"
        say "install a CUDA build of torch (https://pytorch.org/get-started/locally/) or set PYTHON=..."
    else
        say "no Python with torch found; set PYTHON=/path/to/python"
    fi
    rm -f "$OUT/probe.txt" "$OUT/probe-failures.txt"
    exit 2
fi
rm -f "$OUT/probe.txt" "$OUT/probe-failures.txt"

if [[ "$device" == cuda ]]; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu_check: GPU: /' >&2
    else
        say "nvidia-smi not on PATH (torch sees CUDA, continuing)"
    fi
fi

# -- Python packages ----------------------------------------------------------------------------
# pip requirements as pyproject.toml pins them; pytest and gradio (its real clips) only for the test.
mapfile -t missing < <("$PY" - "$run_tests" <<'EOF'
import importlib.metadata as md, importlib.util, sys
needed = {"transformers": "transformers>=5.24,<5.25", "av": "av>=12", "numpy": "numpy>=1.26", "PIL": "pillow>=10"}
if sys.argv[1] == "1":
    needed |= {"pytest": "pytest>=8", "gradio": "gradio==6.31.0"}
for module, requirement in needed.items():
    if importlib.util.find_spec(module) is None:
        print(requirement)
    elif module == "transformers" and not md.version("transformers").startswith("5.24."):
        print(requirement)
EOF
)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ "$install" == 1 ]]; then
        say "installing what is missing: ${missing[*]}"
        if ! "$PY" -m pip install "${missing[@]}" >&2; then
            say "pip could not install ${missing[*]} (no network?). Install them, then rerun."
            exit 2
        fi
    else
        say "missing: ${missing[*]} (pip install them, or rerun without --no-install)"
        exit 2
    fi
fi

# -- the paper's efficiency table -------------------------------------------------------------
if [[ "$device" == cuda ]]; then
    bench_args=(--paper --device cuda)
else
    # tiny model: 16 new tokens and one thread keep it to seconds (on a busy machine two OpenMP
    # threads fighting other processes make it ten times slower, and the tiny model gains nothing)
    bench_args=(--paper --device cpu --size tiny --frames 8 --max-new-tokens 16 --repeats 1)
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
table="$OUT/bench-$device.md"
if [[ "$stage1_only" == 0 ]]; then
    say "running: $PY -m stc.bench ${bench_args[*]} ${bench_extra[*]:-}"
    "$PY" -m stc.bench "${bench_args[@]}" ${bench_extra[@]+"${bench_extra[@]}"} | tee "$table"
    bench_status=${PIPESTATUS[0]}
    if [[ "$bench_status" != 0 ]]; then
        say "FAILED: stc.bench exited with $bench_status"
        exit 1
    fi
    say "table written to ${table#"$ROOT"/} ($(date -u +%Y-%m-%d))"
fi

# -- the stage-1 micro-benchmark ----------------------------------------------------------------
clip=synthetic
clip_path="$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("gradio")
p = pathlib.Path(s.origin).parent / "media_assets/videos/world.mp4" if s and s.origin else None
print(p if p and p.exists() else "")' 2>/dev/null)"
[[ -n "$clip_path" ]] && clip="$clip_path"
if [[ "$device" == cuda ]]; then
    stage1_args=(--device cuda --clip "$clip" --size 7b --frames 32 --retention 0.02 0.1 --repeats 20 --floor)
else
    stage1_args=(--device cpu --clip "$clip" --size tiny --frames 8 --retention 0.02 0.1 --repeats 5 --floor)
fi
stage1="$OUT/stage1-$device.md"
say "running: $PY benchmarks/compress_speed.py ${stage1_args[*]}"
if ! "$PY" benchmarks/compress_speed.py "${stage1_args[@]}" | tee "$stage1"; then
    say "FAILED: the stage-1 micro-benchmark"
    exit 1
fi
if grep -q 'failed' "$stage1"; then
    say "FAILED: a stage-1 case failed (see ${stage1#"$ROOT"/})"
    exit 1
fi
say "stage-1 table written to ${stage1#"$ROOT"/}"
[[ "$stage1_only" == 1 ]] && exit 0

# -- Qwen3-VL (DeepStack, timestamps between temporal patches) ------------------------------------
# The tiny Qwen3-VL on this device (exact at 100%, budgets, stage 2 after DeepStack); with
# STC_GPU_CHECK_QWEN3_VL=<local checkpoint folder> (e.g. a download of Qwen/Qwen3-VL-8B-Instruct;
# the check is offline) the same bench on that checkpoint, 32 frames, stc at 10% and 2%.
qwen3_model="${STC_GPU_CHECK_QWEN3_VL:-tiny-random/qwen3-vl}"
qwen3_args=(--model "$qwen3_model" --device "$device" --methods none stc --max-new-tokens 16)
[[ "$qwen3_model" == tiny-random/* ]] && qwen3_args+=(--frames 8)
say "running: $PY -m stc.bench ${qwen3_args[*]}"
if ! "$PY" -m stc.bench "${qwen3_args[@]}" | tee "$OUT/bench-qwen3-vl-$device.md"; then
    say "FAILED: stc.bench on $qwen3_model"
    exit 1
fi
[[ "$run_tests" == 1 ]] || exit 0

# -- the processor-equivalence test -----------------------------------------------------------
status=0
if ! "$PY" -c 'import torchvision.transforms.v2.functional' >/dev/null 2>&1; then
    "$PY" - >&2 <<'EOF'
import importlib.util, torch
minor = int(torch.__version__.split(".")[1])
tv = "torchvision is not installed" if importlib.util.find_spec("torchvision") is None else (
    "torchvision is installed but does not import beside this torch (built for another torch)")
cuda = torch.version.cuda
index = f"https://download.pytorch.org/whl/cu{cuda.replace('.', '')}" if cuda else "https://download.pytorch.org/whl/cpu"
print(f"gpu_check: {tv}: the processor-equivalence tests will be SKIPPED.\n"
      f"gpu_check: install the torchvision built for torch {torch.__version__}, from the index torch came from; "
      f"PyTorch pairs torch 2.N with torchvision 0.(N+15) (2.11 with 0.26), so probably\n"
      f"gpu_check:   pip install 'torchvision==0.{minor + 15}.*' --index-url {index}\n"
      f"gpu_check: then run this check again")
EOF
    status=3
fi
say "running: $PY -m pytest -q tests/test_processors.py -rs"
log="$OUT/test_processors-$device.log"
"$PY" -m pytest -q tests/test_processors.py -rs -p no:cacheprovider | tee "$log"
test_status=${PIPESTATUS[0]}
if [[ "$test_status" == 5 ]]; then  # pytest: no tests collected
    say "FAILED: no processor test was collected"
    exit 1
elif [[ "$test_status" != 0 ]]; then
    say "FAILED: tests/test_processors.py exited with $test_status"
    exit 1
fi
if ! grep -Eq '[0-9]+ passed' "$log"; then
    say "every processor test was skipped: nothing was compared"
    status=3
fi
[[ "$status" == 0 ]] && say "OK: bench and processor-equivalence test passed"
exit "$status"
