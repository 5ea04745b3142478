#!/usr/bin/env bash
# The dual-path step on the GPU machine in ONE device `run` call (issue 14): the step's equality
# tests on CUDA, then bench_step's table for the issue's two setups. About 3-5 minutes on an H200.
#
# 1. Once, here, from the repository root (a machine with pip and the network): the packages the
#    GPU image lacks that `dpda.train.step` imports (pydantic and its four dependencies; duckdb,
#    through dpda_analysis' package import), as wheels for its Python 3.12, into .whl/ (ignored):
#        benchmarks/gpu_step_check.sh --fetch-wheels
# 2. From the session that holds the device (its checkout is what travels):
#        run(command="bash benchmarks/gpu_step_check.sh", carry=[".whl"], timeout_s=600)
#    Everything printed is also in $OUT/gpu_step_check.log (comes back as a file); the output
#    tail holds the tables.
# 3. Dry run here on the CPU (tiny presets, small sizes, this checkout's venv; no wheels):
#        benchmarks/gpu_step_check.sh --dry-run
#
# What it runs:
#   - pytest tests/test_step_device.py tests/test_step_batched.py tests/test_step_overhead.py on
#     CUDA: separate/joint/batched steps equal their float64 or two-pass references for every rule
#     and granularity, the reduce hook, a GradScaler; one host sync per step;
#   - bench_step --device cuda, Adam, median of 6 steps after 2 warm-ups, with --op-counts:
#       ssl_conformer_tcm:full, 5 utterances per path of 66,800 samples, fp32 (PCGrad separate
#         model/layer, joint, batched model/layer) and bf16 autocast (separate, joint: batched
#         refuses autocast); the fp32 run also prints the top GPU operators of one step per
#         configuration (--profile) into the log; a batched row that cannot run on CUDA prints one
#         "not run: ..." line (e.g. an attention kernel without a vmap rule) and the rest goes on;
#       aasist:full, 8 utterances per path of 64,600 samples, fp32 (separate model/layer, joint,
#         batched).
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=".whl"
# the versions requirements.lock pins (one place for them), for the packages the GPU image lacks
mapfile -t PINS < <(grep -oE '^(pydantic|pydantic-core|typing-extensions|annotated-types|typing-inspection|duckdb)==[^ ]+' requirements.lock)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "${PINS[@]}" || exit 1
    ls -la "$WHEELS"
    exit 0
fi

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT="${OUT:-/tmp/gpu_step_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_step_check.log"
: >"$LOG"
export PYTHONUNBUFFERED=1

if [[ $DRY == 1 ]]; then
    PY="${PYTHON:-.venv/bin/python}"
    [[ -x "$PY" ]] || PY=/work/main/.venv/bin/python
    export PYTHONPATH="$PWD/platform:$PWD/analysis"
    DEV=cpu
    SSL=(--model ssl_conformer_tcm:tiny --batch 2 --samples 16000 --repeats 1 --warmup 1)
    AAS=(--model aasist:tiny --batch 2 --samples 16000 --repeats 1 --warmup 1)
else
    PY=python3
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "no wheels in $WHEELS: run benchmarks/gpu_step_check.sh --fetch-wheels first, then carry [\"$WHEELS\"]"
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="/tmp/site:$PWD/platform:$PWD/analysis"
    DEV=cuda
    SSL=(--model ssl_conformer_tcm:full --batch 5 --samples 66800 --repeats 6 --warmup 2)
    AAS=(--model aasist:full --batch 8 --samples 64600 --repeats 6 --warmup 2)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
fi

say() { echo "=== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
say "python/torch"
$PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$LOG"

say "step equality tests on $DEV"
$PY -m pytest -q -p no:cacheprovider -W ignore::UserWarning tests/test_step_device.py tests/test_step_batched.py \
    tests/test_step_overhead.py >"$OUT/pytest.log" 2>&1
tail -n 25 "$OUT/pytest.log" | tee -a "$LOG"

BENCH=("$PY" benchmarks/bench_step.py --device "$DEV" --rules pcgrad --joint-rules pcgrad --op-counts)
filter() { grep -v -E "UserWarning|warn\(|_warn_once|CPUAllocator|gpuGetDeviceCount|return _VF" ; }

say "XLS-R + Conformer-TCM, fp32"
"${BENCH[@]}" "${SSL[@]}" --granularity model,layer --modes separate,joint,batched --profile /tmp/step_traces \
    --top 12 2>&1 | filter >>"$LOG"
# the table and the op counts to the output tail; the profiles stay in the log
sed -n '/=== XLS-R + Conformer-TCM, fp32/,$p' "$LOG" | sed -n '2,/^== /p' | grep -v "^== "

say "XLS-R + Conformer-TCM, bf16 autocast"
"${BENCH[@]}" "${SSL[@]}" --granularity model --modes separate,joint --amp bf16 2>&1 | filter | tee -a "$LOG"

say "AASIST full, fp32"
"${BENCH[@]}" "${AAS[@]}" --granularity model,layer --modes separate,joint,batched 2>&1 | filter | tee -a "$LOG"

say "done; the whole log: $LOG"
