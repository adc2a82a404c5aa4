#!/usr/bin/env bash
# Create (or reuse) the project venv and install vinculum into it, editable.
#   scripts/install.sh            runtime only
#   scripts/install.sh dev        with test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VINCULUM_VENV:-.venv}"
extra="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
if [ -n "$extra" ]; then
  "$venv/bin/python" -m pip install -q -e ".[$extra]"
else
  "$venv/bin/python" -m pip install -q -e .
fi
