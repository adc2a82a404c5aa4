#!/usr/bin/env bash
# The whole test suite, installing what it needs first. This is the README's test command.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${VINCULUM_VENV:-.venv}"
bash scripts/install.sh test || exit 1
"$venv/bin/python" -m pytest "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
