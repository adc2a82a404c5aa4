"""latticectl get hosts: live from real hosts by ping, else from the status branch."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from lattice.localnats import NatsServer
from tests.cliutil import CAUSE, gitops_repo, report, run, write_status
from tests.helpers import eventually_sync
from tests.hostproc import HostPool

CLOSED = "nats://127.0.0.1:1"


def test_live_hosts_from_a_ping(nats_server: NatsServer, lattice_id: str, tmp_path: Path,
                                env: dict[str, str]) -> None:
    args = ("--nats-url", nats_server.url, "--lattice", lattice_id, "get", "hosts")
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        pool.spawn(labels={"leds": "12"}, name="pi")
        pool.spawn(labels={"zone": "a"}, name="vm1")

        def both() -> list[dict[str, Any]] | None:
            items = json.loads(run(env, *args, "-o", "json").stdout)["items"]
            return items if len(items) == 2 else None

        items = eventually_sync(both, timeout=20, message="two hosts answer")
        assert [i["name"] for i in items] == ["pi", "vm1"]
        assert {i["source"] for i in items} == {"lattice"}
        assert items[0]["labels"]["leds"] == "12"
        table = run(env, *args)
        assert table.exit_code == 0, table.output
        assert table.stderr == ""
        lines = [line.split() for line in table.stdout.splitlines()]
        assert lines[0] == ["NAME", "ID", "LABELS", "UPTIME", "ACTORS", "PROVIDERS"]
        assert lines[1][0] == "pi" and lines[1][2] == "leds=12" and lines[1][4:] == ["0", "0"]
        assert lines[1][1] == items[0]["host_id"][:12]
        one = run(env, *args, "vm1", "-o", "yaml")
        assert one.exit_code == 0 and "name: vm1" in one.stdout and "- " not in one.stdout
        missing = run(env, *args, "nope")
        assert missing.exit_code == 1 and "host 'nope' not found" in missing.stderr


def test_unreachable_nats_falls_back_to_the_status_branch(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "agent", report(repo.head.commit.hexsha))
    start = time.monotonic()
    result = run(env, "--repo", str(repo.working_tree_dir), "--nats-url", CLOSED,
                 "get", "hosts")
    took = time.monotonic() - start
    assert took < 3.0, took  # NATS_TIMEOUT (2 s) to give up on NATS (it was ~3.4 s)
    assert result.exit_code == 0, result.output
    [line] = result.stderr.splitlines()
    assert re.fullmatch(rf"warning: cannot reach NATS at {re.escape(CLOSED)} {CAUSE}: "
                        r"hosts from the status branch, as of \d+s ago", line), line
    assert line.count("cannot reach NATS") == 1, line
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names == ["pi", "vm1"]
    doc = json.loads(run(env, "--repo", str(repo.working_tree_dir), "get", "hosts",
                         "-o", "json").stdout)
    assert {i["source"] for i in doc["items"]} == {"status-branch"}


def test_neither_nats_nor_status_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    repo = gitops_repo(tmp_path)
    result = run(env, "--repo", str(repo.working_tree_dir), "get", "hosts")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert "no NATS URL configured" in line and "no status yet" in line
