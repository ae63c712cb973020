#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv (scripts/setup.sh), then runs the study.
# It ends within 29 minutes, setup included: on a machine too slow for the study's budget the
# budget protocol is given less (embscale study --time-limit; later options override it).
set -euo pipefail
started="$(date +%s)"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
exec .venv/bin/embscale study --time-limit 29m --started-at "$started" "$@"
