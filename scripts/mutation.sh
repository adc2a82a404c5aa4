#!/usr/bin/env bash
# Mutation testing (optional, not run by CI): mutmut 3 changes the code one small edit at a
# time (a flipped comparison, a changed string, a dropped argument) and runs the tests that
# cover it; a mutant that no test notices "survives" and points at an untested behaviour.
#
#   bash scripts/mutation.sh                      # lattice/selectors.py, lattice/manifests.py
#   bash scripts/mutation.sh planner              # reconciler/planner.py (slow: its tests)
#   bash scripts/mutation.sh selectors manifests planner
#
# It runs in a throwaway copy of the tree (git HEAD by default; MUTATION_SOURCE=worktree to
# take the working tree as it is, uncommitted edits included), so the repository never
# gets a mutants/ directory and edits made meanwhile do not disturb a run. The config is
# [tool.mutmut] in pyproject.toml; this script narrows only_mutate and the test files in
# the copy to the targets asked for. Bounds: MUTATION_TIMEOUT seconds for the whole run
# (default 1500), MUTATION_JOBS workers (default 2). Prints the counts and every surviving
# mutant's diff; MUTATION_KEEP=1 keeps the copy (its path is printed) to `mutmut show` or
# `mutmut browse` there. Needs mutmut: `.venv/bin/pip install -e '.[mutation]'`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
mutmut="$root/.venv/bin/mutmut"
[ -x "$mutmut" ] || { echo "mutation.sh: no $mutmut; .venv/bin/pip install -e '.[mutation]'" >&2; exit 2; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(selectors manifests)
mutate=() tests=() deselect=()
for t in "${targets[@]}"; do
  case "$t" in
    selectors) mutate+=(lattice/selectors.py); tests+=(tests/test_selectors.py) ;;
    manifests) mutate+=(lattice/manifests.py)
               tests+=(tests/test_manifests.py tests/test_manifest_loader.py) ;;
    planner)   mutate+=(reconciler/planner.py)
               tests+=(tests/test_planner.py tests/test_planner_limits.py
                       tests/test_planner_matcher.py tests/test_planner_properties.py
                       tests/test_matching.py)
               # it looks for module-level dicts: mutmut's trampolines are some
               deselect+=(tests/test_planner_matcher.py::test_the_pure_core_keeps_no_state_at_module_level) ;;
    *) echo "mutation.sh: unknown target $t (selectors, manifests, planner)" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d "${TMPDIR:-/tmp}/vinculum-mutation.XXXXXX")"
if [ "${MUTATION_KEEP:-0}" = 1 ]; then
  echo "mutation.sh: working copy kept in $work"
else
  trap 'rm -rf "$work"' EXIT
fi
if [ "${MUTATION_SOURCE:-head}" = worktree ]; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard \
     | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
     | tar --null -T - -cf -) | tar -xf - -C "$work"
else
  git -C "$root" archive HEAD | tar -xf - -C "$work"
fi

# narrow [tool.mutmut] in the copy: only the targets, only test files that exist there
present=()
for f in "${tests[@]}"; do [ -e "$work/$f" ] && present+=("$f"); done
for t in "${deselect[@]}"; do [ -e "$work/${t%%::*}" ] && present+=(--deselect "$t"); done
"$py" - "$work/pyproject.toml" "${#mutate[@]}" "${mutate[@]}" "${present[@]}" <<'EOF'
import json, re, sys
path, n = sys.argv[1], int(sys.argv[2])
mutate, tests = sys.argv[3:3 + n], sys.argv[3 + n:]
text = open(path).read()
text = re.sub(r"^only_mutate = .*$", "only_mutate = " + json.dumps(mutate), text, flags=re.M)
text = re.sub(r"^pytest_add_cli_args_test_selection = \[.*?\]$",
              "pytest_add_cli_args_test_selection = " + json.dumps(tests), text,
              flags=re.M | re.S)
open(path, "w").write(text)
EOF

cd "$work"
echo "mutation.sh: mutating ${mutate[*]} against ${present[*]}"
start=$SECONDS
set +e
# HOME and git config as on a fresh machine, as scripts/test.sh does
env HOME="$work/.home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
  timeout --foreground "${MUTATION_TIMEOUT:-1500}" \
  "$mutmut" run --max-children "${MUTATION_JOBS:-2}" > "$work/run.log" 2>&1
rc=$?
set -e
[ $rc -eq 124 ] && echo "mutation.sh: stopped after ${MUTATION_TIMEOUT:-1500} s; counts are partial"
[ $rc -ne 0 ] && [ $rc -ne 124 ] && { tail -40 "$work/run.log"; echo "mutation.sh: mutmut exited $rc" >&2; }
"$mutmut" export-cicd-stats > /dev/null 2>&1 || true
if [ -f mutants/mutmut-cicd-stats.json ]; then
  "$py" - mutants/mutmut-cicd-stats.json "$((SECONDS - start))" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
total = s.get("total", 0)
print(f"mutation.sh: {total} mutants: {s.get('killed', 0)} killed, "
      f"{s.get('survived', 0)} survived, {s.get('timeout', 0)} timed out, "
      f"{s.get('suspicious', 0)} suspicious, {s.get('no_tests', 0)} without tests, "
      f"{s.get('skipped', 0)} skipped, {s.get('not_checked', 0)} not checked "
      f"in {sys.argv[2]} s")
EOF
fi
survivors=$("$mutmut" results 2>/dev/null | sed -n 's/^ *\([^ :]*\): survived$/\1/p')
for m in $survivors; do
  echo "---- survived: $m"
  "$mutmut" show "$m" 2>/dev/null | sed -n '/^---/,$p'
done
exit $(( rc == 124 ? 0 : rc ))
