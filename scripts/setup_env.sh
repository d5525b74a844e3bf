# Sourced by demo.sh and test.sh: creates ./.venv on first use and installs octrack into it (editable).
# Set OCTRACK_PYTHON to choose the interpreter (default python3, which must be >= 3.10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${OCTRACK_PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "octrack needs Python >= 3.10; found: $("$PYTHON" --version 2>&1)" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating a virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.octrack-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
    echo "installing octrack and its dependencies into $VENV (the first time takes a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[torch]" \
        || echo "PyTorch's CPU build was not found (see setup.cfg): the tests on the torch backend will be skipped" >&2
    touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
