"""``latticectl request`` against a real nats-server."""

from __future__ import annotations

from pathlib import Path

from lattice.localnats import NatsServer
from tests.cliutil import clean_env, run


def test_nobody_listening_is_a_one_line_error(nats_server: NatsServer, tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": nats_server.url}
    res = run(env, "request", "nobody.here", "hi", "--timeout", "500ms")
    assert res.exit_code != 0
    assert "nothing on" in res.output and "nobody.here" in res.output


def test_bad_timeout_names_the_option(nats_server: NatsServer, tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": nats_server.url}
    res = run(env, "request", "x", "--timeout", "soon")
    assert res.exit_code == 2 and "--timeout" in res.output


def test_credentials_reach_a_server_that_requires_them(tmp_path: Path) -> None:
    """user + password (from the environment only) and a context's nats-user."""
    srv = NatsServer(data_dir=tmp_path / "nats",
                     extra_args=["--user", "ops", "--pass", "s3cret"]).start()
    try:
        env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": srv.url}
        refused = run(env, "request", "nobody.here", "--timeout", "500ms")
        assert refused.exit_code != 0 and "Authorization Violation" in refused.output
        assert "s3cret" not in refused.output
        env |= {"LATTICECTL_NATS_USER": "ops", "LATTICECTL_NATS_PASSWORD": "s3cret"}
        admitted = run(env, "request", "nobody.here", "--timeout", "500ms")
        assert "nothing on" in admitted.output, admitted.output  # connected: no listener
        assert "s3cret" not in admitted.output
    finally:
        srv.stop()
