"""Shared fixtures: a real nats-server on a free loopback port, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from lattice.localnats import NatsServer
from lattice.natsutil import connect


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream, stopped by its pid after the test."""
    srv = NatsServer(data_dir=tmp_path / "nats")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def module_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server shared by the tests of one module (for modules whose hosts are
    costly to start), stopped by its pid after the last of them."""
    srv = NatsServer(data_dir=tmp_path_factory.mktemp("nats"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client connected to :func:`nats_server`."""
    client = await connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def lattice_id(request: pytest.FixtureRequest) -> str:
    """A lattice id unique to the test."""
    return "t" + format(abs(hash(request.node.nodeid)) % 10**8, "08d")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A latticectl environment that sees nothing of the caller's: no config file, no
    `up` state, no NATS URL or repository (tests add what they need)."""
    from tests.cliutil import clean_env

    return clean_env(tmp_path)
