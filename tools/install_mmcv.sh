#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled CPU ops into the given venv.
#
# PyPI has only mmcv's sdist, and mmdet 3.3 / mmseg 1.2 need exactly mmcv < 2.2 with `mmcv._ext`.
# The wheel is built once against the venv's torch (about 18-20 min on 2 cores) and cached in
# ${SPARC_EVAL_WHEEL_CACHE:-~/.cache/sparc-eval/wheels}/torch-<version>/, outside any clone, so
# later installs (and CI in a fresh clone) take seconds. Build steps (see README "Installation"):
# setuptools<81 (setup.py imports pkg_resources), --no-build-isolation (setup.py imports torch to
# decide whether to compile the ops), -std=c++20 (torch 2.14 headers refuse C++17), CPU-only.
set -euo pipefail
py=${1:?usage: install_mmcv.sh PATH/TO/python}
if "$py" -c "import mmcv, mmcv.ops" 2>/dev/null; then exit 0; fi
torch_version=$("$py" -c "import torch; print(torch.__version__)")
cache=${SPARC_EVAL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sparc-eval/wheels}/torch-$torch_version
wheel=$(ls "$cache"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
    echo "Building mmcv 2.1.0 against torch $torch_version (one time, about 20 minutes; cached in $cache)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$py" -m pip install -q setuptools==80.9.0 wheel ninja
    "$py" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$work" mmcv==2.1.0
    tar xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work"/mmcv-2.1.0/setup.py
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} CUDA_VISIBLE_DEVICES="" \
        "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$work"/mmcv-2.1.0
    mkdir -p "$cache"
    built=$(ls "$work"/dist/mmcv-2.1.0-*.whl)
    cp "$built" "$cache/.tmp-$(basename "$built")"
    mv "$cache/.tmp-$(basename "$built")" "$cache/$(basename "$built")"
    wheel="$cache/$(basename "$built")"
fi
"$py" -m pip install -q --no-deps "$wheel"
"$py" -c "import mmcv.ops" || { echo "mmcv was installed but mmcv.ops does not import" >&2; exit 1; }
