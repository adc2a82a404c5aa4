"""Hostile manifests benchmark: what an alias bomb and a 50 MB file cost the agent.

Two cases, each run in a fresh Python process so its peak RSS is its own:

* **alias bomb**: a Deployment of about 530 bytes whose annotations hold a "billion
  laughs" (``--levels`` anchors, each a list of ``--fan`` aliases of the one before: 9 x 9
  is 9**9 = 387 million strings once expanded); ``parse_file`` on it, wall time.
* **50 MB file**: a real git repository in a temporary directory with a ``--mb`` MB file
  (sparse zeros) and one valid manifest; ``GitSource.evaluate`` of that commit, wall time
  and the growth of the process's peak RSS (``ru_maxrss``) across the call.

``--before REV`` runs the same two cases on the code of commit ``REV`` too (extracted with
``git archive`` into a temporary directory), each under ``--before-timeout`` seconds: the
bomb took minutes before it was bounded, so this is off by default.

    python bench/bench_hostile.py [--levels 9] [--fan 9] [--mb 50] [--before REV]
                                  [--before-timeout 600] [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import RESULTS, command_line, heading, machine, record  # noqa: E402

BOMB = """
import json, resource, sys, time
from lattice.manifest_loader import parse_file
text = sys.stdin.read()
start = time.perf_counter()
_, errors, _ = parse_file("bomb.yaml", text)
print(json.dumps({"s": time.perf_counter() - start,
                  "error": str(errors[0]) if errors else "(accepted)"}))
"""

BIG_FILE = """
import json, resource, sys, time
from pathlib import Path
from gitsync.source import GitSource
src = GitSource.open(sys.argv[1], data_dir=Path(sys.argv[2]))
sha = src.head()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
ev = src.evaluate(sha)
took = time.perf_counter() - start
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"s": took, "rss_mb": grew / 1024, "error": ev.errors[0] if ev.errors else ""}))
"""


def bomb(levels: int, fan: int) -> str:
    """The alias bomb of tests/test_manifest_hostile.py."""
    lines = ["kind: Deployment", "metadata:", "  name: bomb", "  annotations:",
             '    l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"    l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join([*lines, "spec: {}"]) + "\n"


def big_repo(where: Path, mb: int) -> Path:
    """A git repository with an ``mb`` MB manifest file and a small valid one."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    repo = where / "repo"
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True,
                   env=env)
    with open(repo / "big.yaml", "wb") as f:
        f.truncate(mb * 1024 * 1024)
    (repo / "a.yaml").write_text("kind: Deployment\nmetadata: {name: a}\nspec: {}\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "big"], cwd=repo, check=True, env=env)
    return repo


def run(code: str, pythonpath: Path, *args: str, stdin: str = "",
        timeout: float | None = None) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter with ``pythonpath`` first; its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], input=stdin, text=True,
                              capture_output=True, env=env, timeout=timeout, check=True,
                              cwd=pythonpath)
    except subprocess.TimeoutExpired:
        return {"s": float("inf"), "error": f"still running after {timeout:g} s (killed)"}
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def cases(code_dir: Path, text: str, repo: Path, data: Path,
          timeout: float | None) -> tuple[dict[str, object], dict[str, object]]:
    return (run(BOMB, code_dir, stdin=text, timeout=timeout),
            run(BIG_FILE, code_dir, str(repo), str(data), timeout=timeout))


def describe(label: str, bomb_r: dict[str, object], big_r: dict[str, object]) -> list[str]:
    return [
        f"- {label}: alias bomb refused in {float(str(bomb_r['s'])) * 1000:.1f} ms: "
        f"`{bomb_r['error']}`",
        f"- {label}: big file evaluated in {float(str(big_r['s'])) * 1000:.1f} ms, peak RSS "
        f"grew {float(str(big_r.get('rss_mb', 'nan'))):.1f} MB: `{big_r['error']}`",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=9)
    ap.add_argument("--fan", type=int, default=9)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--before", metavar="REV", help="also run the code of this commit")
    ap.add_argument("--before-timeout", type=float, default=600.0)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="append here instead")
    args = ap.parse_args(argv)
    text = bomb(args.levels, args.fan)
    lines = [
        heading("hostile manifests: alias bomb and big file"),
        f"- machine: {machine()}",
        f"- command: `{command_line('bench_hostile.py', argv)}`",
        f"- alias bomb: {len(text.encode())} bytes, {args.levels} levels of {args.fan} "
        f"aliases ({args.fan ** args.levels} strings once expanded); big file: {args.mb} MB "
        "in a real git repository, next to one valid manifest",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        repo = big_repo(Path(tmp), args.mb)
        if args.before:
            old = Path(tmp) / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before, "lattice", "gitsync"],
                                     cwd=ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            lines += describe(f"before ({args.before})", *cases(
                old, text, repo, Path(tmp) / "data-before", args.before_timeout))
        lines += describe("now", *cases(ROOT, text, repo, Path(tmp) / "data", None))
    print("\n".join(lines))
    if not args.no_record:
        record(lines, args.results)


if __name__ == "__main__":
    main()
