#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv (scripts/setup.sh), then runs the study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
exec .venv/bin/embscale study "$@"
