#!/usr/bin/env bash
# Installs octrack into ./.venv (first run) and runs the test suite, on every core (pytest-xdist).
# Extra arguments go to pytest (e.g. -n 0 for one process, or a test file).
source "$(dirname "$0")/setup_env.sh"
cd "$ROOT"
exec python -m pytest -n auto "$@"
