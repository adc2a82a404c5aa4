#!/usr/bin/env bash
# The whole test suite, installing what it needs first. This is the README's test command.
# pytest runs as on a fresh machine: an empty HOME, no XDG config, and no global or system
# git config (so no git identity), so no test depends on this machine's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${VINCULUM_VENV:-.venv}"
bash scripts/install.sh test || exit 1
home="$(mktemp -d "${TMPDIR:-/tmp}/vinculum-test-home.XXXXXX")" || exit 1
trap 'rm -rf "$home"' EXIT
# Four workers, each taking whole files (module fixtures stay shared): most tests wait on
# real processes, so this pays even on two cores. VINCULUM_TEST_WORKERS=0 runs serially.
workers="${VINCULUM_TEST_WORKERS:-4}"
parallel=()
if [ "$workers" != "0" ]; then
  parallel=(-n "$workers" --dist loadfile)
fi
env -u XDG_CONFIG_HOME HOME="$home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
  "$venv/bin/python" -m pytest "${parallel[@]}" "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
