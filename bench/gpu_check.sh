#!/usr/bin/env bash
# The GPU paths, executed: bench/gpu_check.py's two stages, each under its own time limit, then one table
# (printed, and written as JSON to bench/results/gpu_check-<GPU name>.json or --out).
#
#   bench/gpu_check.sh [--quick] [--device auto|cuda|cpu] [--tiny] [--out FILE] [--work DIR] [--wheels DIR]
#
#   --quick       the quick stage only (<= 90 s): versions, TF32, imports, training steps, demo suite on the device
#   --device cpu --tiny   a dry run of every path on a CPU with tiny sizes (gloo instead of NCCL)
#   --wheels DIR  first install DIR/*.whl (tools/gpu_wheelhouse.sh) into WORK/site, for machines without
#                 a package registry; sparc_eval itself runs from this source tree
#   --work DIR    where runs, logs (WORK/logs) and rows go (default: a new folder under /tmp)
# Environment: PYTHON (default python3). Exit code 1 when a row FAILed.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
QUICK=0 DEVICE=auto TINY="" OUT="" WORK="" WHEELS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --tiny) TINY=--tiny ;;
        --device) DEVICE=$2; shift ;;
        --out) OUT=$2; shift ;;
        --work) WORK=$2; shift ;;
        --wheels) WHEELS=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
WORK=${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
if [ -n "$WHEELS" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        "$WHEELS"/*.whl || { echo "gpu_check.sh: installing $WHEELS/*.whl failed" >&2; exit 2; }
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
    echo "wheels from $WHEELS installed into $WORK/site in $(( $(date +%s) - START )) s"
fi
if [ "$DEVICE" = auto ]; then
    DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')") || exit 2
fi
ARGS=(--work "$WORK" --device "$DEVICE" $TINY)
# Backstops above the units' own timeouts (bench/gpu_check.py UNITS): a stage never outlives these.
if [ -n "$TINY" ]; then QUICK_LIMIT=420 FULL_LIMIT=900; else QUICK_LIMIT=150 FULL_LIMIT=310; fi
stage() {
    local t=$(date +%s)
    timeout -k 10 "$2" "$PY" bench/gpu_check.py stage "$1" "${ARGS[@]}"
    local rc=$?
    [ $rc -eq 0 ] || echo "gpu_check.sh: stage $1 ended with exit code $rc (timeout $2 s: 124/137)" >&2
    echo "stage $1: $(( $(date +%s) - t )) s wall"
}
stage quick "$QUICK_LIMIT"
[ "$QUICK" = 1 ] || stage full "$FULL_LIMIT"
"$PY" bench/gpu_check.py report "${ARGS[@]}" ${OUT:+--out "$OUT"}
RC=$?
echo "gpu_check.sh: $(( $(date +%s) - START )) s in all; logs in $WORK/logs"
exit $RC
