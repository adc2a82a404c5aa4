#!/usr/bin/env bash
# The main job, installing what it needs first: a local lattice (nats-server, 3 hosts, the
# agent on a git copy of examples/repo) in the foreground. Ctrl-C stops everything.
# Extra arguments go to `latticectl up`, e.g. `bash scripts/up.sh --hosts 5 --detach`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv="${VINCULUM_VENV:-.venv}"
exec "$venv/bin/latticectl" up "$@"
