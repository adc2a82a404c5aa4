"""``latticectl dashboard``'s server on a real port: pages from a real status branch (the
agent's own writer), hosts from a real nats-server with real hosts, the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import click
import git
import pytest
from aiohttp import web

from cli.dashboard.picture import Picture
from cli.dashboard.server import Dashboard, serving
from cli.dashboard_cmd import allowed_hosts, parse_addr
from cli.settings import Settings
from cli.view import open_view
from hostagent.host import Host
from lattice.localnats import NatsServer
from lattice.status import Phase
from tests.cliutil import UNPLACED, gitops_repo, report, write_status
from tests.gitrepo import commit_files
from tests.helpers import eventually
from tests.lattice_e2e import in_process_hosts

DEPLOYMENT_ROW = 'id="deployment-amazing-deployment"'


class Served:
    def __init__(self, url: str, picture: Picture) -> None:
        self.url = url
        self.picture = picture


@contextlib.asynccontextmanager
async def serve(repo: git.Repo, nats_url: str | None = None,
                lattice: str = "default") -> AsyncIterator[Served]:
    settings = Settings(repo=str(repo.working_tree_dir), nats_url=nats_url, lattice=lattice)
    picture = Picture(lambda: open_view(settings, fetch=False),
                      settings.nats() if nats_url else None, lattice)
    async with serving(Dashboard(picture),
                       lambda runner: web.TCPSite(runner, "127.0.0.1", 0)) as runner:
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", picture)


async def get(url: str, **kw: object) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(url, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.text(), dict(r.headers)


@pytest.fixture
def synced(tmp_path: Path) -> git.Repo:
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "data", report(repo.head.commit.hexsha))
    return repo


async def test_overview_is_whole_without_script(synced: git.Repo) -> None:
    async with serve(synced) as d:
        await eventually(lambda: d.picture.git.report is not None)
        status, html, headers = await get(d.url + "/")
    assert status == 200
    assert DEPLOYMENT_ROW in html and 'data-phase="Synced"' in html
    assert '<span class="phase phase-synced">Synced</span>' in html
    assert 'id="bindingset-amazing-bindings"' in html
    assert synced.head.commit.hexsha[:12] in html  # branch HEAD in the source panel
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


async def test_deployment_page_shows_placements_conditions_history(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    first = repo.head.commit.hexsha
    write_status(repo, tmp_path / "data", report(first, phase=Phase.DEGRADED))
    second = commit_files(repo, {"README.md": "x"}, "second")
    write_status(repo, tmp_path / "data", report(second))
    async with serve(repo) as d:
        await eventually(lambda: d.picture.git.report is not None)
        status, html, _ = await get(d.url + "/deployments/amazing-deployment")
        assert status == 200
        assert 'id="placements"' in html and UNPLACED not in html  # synced now: all placed
        assert '<tr data-type="Ready">' in html
        assert f'data-revision="{second}"' in html and f'data-revision="{first}"' in html
        assert f'href="/diff/{first}..{second}"' in html
        assert "Degraded" in html  # the older status commit's phase
        status, diff, _ = await get(f"{d.url}/diff/{first}..{second}")
        assert status == 200 and "README.md" in diff
        for bad in ("/diff/--output=x..HEAD", "/diff/abc", f"/diff/{first}..{'f' * 40}"):
            status, _, _ = await get(d.url + bad)
            assert status == 404, bad
        status, html, _ = await get(d.url + "/deployments/nope")
        assert status == 404 and "no deployment named" in html


async def test_unplaced_shows_why(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "data", report(repo.head.commit.hexsha,
                                                phase=Phase.DEGRADED))
    async with serve(repo) as d:
        await eventually(lambda: d.picture.git.report is not None)
        _, html, _ = await get(d.url + "/deployments/amazing-deployment")
    assert UNPLACED in html and "<em>unplaced</em>" in html


async def test_read_only_and_host_checked(synced: git.Repo) -> None:
    async with serve(synced) as d, aiohttp.ClientSession() as s:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with s.request(method, d.url + "/") as r:
                assert r.status == 405, method
    picture = Picture(lambda: open_view(Settings(repo=str(synced.working_tree_dir)),
                                        fetch=False), None, "default")
    runner = web.AppRunner(Dashboard(picture, allowed_hosts=allowed_hosts("127.0.0.1", 1)
                                     ).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        status, _, _ = await get(f"http://127.0.0.1:{port}/healthz")
        assert status == 421  # the Host header names another port: refused
        status, _, _ = await get(f"http://127.0.0.1:{port}/healthz",
                                 headers={"Host": "127.0.0.1:1"})
        assert status == 200
    finally:
        await runner.cleanup()
        picture.close()


async def test_stream_names_the_regions_a_status_commit_changed(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "data", report(sha, phase=Phase.DEGRADED))
    async with serve(repo) as d:
        await eventually(lambda: d.picture.git.report is not None)
        version = d.picture.version
        async with aiohttp.ClientSession() as s, \
                s.get(f"{d.url}/stream?v={version}") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            write_status(repo, tmp_path / "data", report(sha))
            written = time.monotonic()
            change = None
            while change is None:
                line = (await asyncio.wait_for(r.content.readline(), 10)).decode()
                if line.startswith("data: "):
                    change = json.loads(line[6:])
            seen = time.monotonic() - written
        assert change["version"] > version
        assert {"deployments", "source", "entity"} <= set(change["regions"])
        assert seen < 5.0  # polled every 0.2 s; generous for a loaded machine
        status, html, _ = await get(d.url + "/fragment/deployments")
        assert status == 200 and 'data-phase="Synced"' in html
        assert "<html" not in html  # a fragment, not a page


@pytest.fixture
async def three_hosts(nats_server: NatsServer, lattice_id: str) -> AsyncIterator[list[Host]]:
    async with in_process_hosts(nats_server.url, lattice_id, ("eu", "eu", "us")) as made:
        yield made


async def test_lattice_groups_hosts_and_greys_out_a_stopped_one(
        synced: git.Repo, nats_server: NatsServer, lattice_id: str,
        three_hosts: list[Host]) -> None:
    async with serve(synced, nats_server.url, lattice_id) as d:
        await eventually(lambda: len(d.picture.hosts) == 3, message="hosts seen")
        status, html, _ = await get(d.url + "/lattice?group=zone")
        assert status == 200
        assert 'data-group="eu"' in html and 'data-group="us"' in html
        assert html.index('data-group="eu"') < html.index('data-group="us"')
        assert html.count('data-state="up"') == 3
        gone = three_hosts[2]
        await gone.stop()  # says host_stopped: greyed at once
        await eventually(lambda: not d.picture.hosts[gone.host_id].answering,
                         message="stopped host marked gone")
        _, html, _ = await get(d.url + "/fragment/lattice?group=zone")
        box = html[html.index(f'id="host-{gone.host_id}"'):]
        assert 'data-state="gone"' in box.split(">", 1)[0]
        assert "not answering" in box.split("</article>", 1)[0]
        _, events, _ = await get(d.url + "/events")
        assert 'data-type="host_stopped"' in events


def test_addr_parsing() -> None:
    assert parse_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_addr("[::1]:8470") == ("::1", 8470)
    for bad in ("8470", "host:", ":80", "h:99999"):
        with pytest.raises(click.BadParameter, match=r"HOST:PORT|out of range"):
            parse_addr(bad)
    assert "127.0.0.1:9" in allowed_hosts("127.0.0.1", 9)
    assert "localhost:9" in allowed_hosts("127.0.0.1", 9)
    assert allowed_hosts("0.0.0.0", 9) == frozenset()
