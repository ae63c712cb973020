#!/usr/bin/env bash
# Run the test suite from a fresh checkout: sets up .venv (scripts/setup.sh --tests), then pytest.
# Fails when a test fails and when no test ran (pytest's exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
export MUJOCO_GL="${MUJOCO_GL:-osmesa}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; failing" >&2
    exit 1
fi
exit "$rc"
