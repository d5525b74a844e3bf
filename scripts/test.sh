#!/usr/bin/env bash
# Installs octrack into ./.venv (first run) and runs the test suite. Extra arguments go to pytest.
source "$(dirname "$0")/setup_env.sh"
cd "$ROOT"
exec python -m pytest "$@"
