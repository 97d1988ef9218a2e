#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels bench/gpu_check.sh needs on a GPU machine that has torch,
# torchvision, timm, transformers, huggingface_hub, safetensors, numpy, scipy, scikit-learn, pandas, PyYAML,
# click, tqdm, rich, regex, matplotlib and pillow but no package registry: the rest of what `import sparc_eval`
# and the checked paths import. sparc_eval itself runs from the source tree (PYTHONPATH), not from a wheel.
#
#   tools/gpu_wheelhouse.sh            # for the GPU machine's CPython 3.12 on x86_64 Linux
#   PY_VERSION=3.11 tools/gpu_wheelhouse.sh
#
# On the GPU machine (or: bench/gpu_check.sh --wheels .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
#
# All are pure-Python (py3-none-any) but pycocotools (the shapes world rasterises its masks with it): a
# CPython >= 3.12 abi3 wheel, hence PY_VERSION. Left out on purpose, each an optional path that the check
# reports as SKIP when absent: spaCy + its English pipeline (caption faithfulness; ~40 MB of binary
# wheels), pycocoevalcap (captioning metrics, needs Java), faiss (an alternative retrieval search), mmcv/mmdet/
# mmseg (transfer tasks). Versions: the pins of constraints.txt; wcwidth (ftfy's only dependency) pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
DEST=.whl
LIMIT_MIB=60
pin() {  # NAME -> NAME==VERSION from constraints.txt
    local line
    line=$(grep -i "^$1==" constraints.txt) || { echo "gpu_wheelhouse.sh: $1 is not pinned in constraints.txt" >&2; exit 2; }
    echo "$line"
}
PINS=("$(pin open_clip_torch)" "$(pin ftfy)" "wcwidth==0.2.14" "$(pin webdataset)" "$(pin braceexpand)" "$(pin pycocotools)")
rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${PINS[@]}"
count=$(ls "$DEST"/*.whl | wc -l)
if [ "$count" -ne "${#PINS[@]}" ]; then
    echo "gpu_wheelhouse.sh: expected ${#PINS[@]} wheels (one per package), found $count" >&2
    exit 1
fi
size=$(du -sm "$DEST" | cut -f1)
if [ "$size" -gt "$LIMIT_MIB" ]; then
    echo "gpu_wheelhouse.sh: $DEST holds $size MiB (limit $LIMIT_MIB)" >&2
    exit 1
fi
ls -l "$DEST"
echo "$count wheels, $(du -sh "$DEST" | cut -f1) in $DEST for CPython $PY_VERSION"
