"""``lattice.natsutil.connect`` passes an nkey seed file and TLS options through to a real
nats-server that requires them (user + password is covered by the CLI's request tests).

The nkey is made here (Ed25519 via PyNaCl, encoded as nkeys do); the TLS certificate is a
throw-away CA and server certificate for 127.0.0.1, made with the openssl binary.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import nacl.signing
import nkeys
import pytest

from lattice.ids import encode_public_key
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions, connect


async def _round_trip(opts: NatsOptions) -> None:
    """Connect with ``opts`` and prove the server takes a message from us."""
    nc = await connect(opts, initial_timeout=5)
    try:
        assert nc.is_connected
        await nc.publish("x.y", b"")
        await nc.flush()
    finally:
        await nc.close()


def _user_nkey(tmp: Path) -> tuple[str, Path]:
    """A user nkey: its public key (``U...``) and a seed file (``SU...``)."""
    raw = os.urandom(32)
    prefix = nkeys.PREFIX_BYTE_USER
    header = bytes([nkeys.PREFIX_BYTE_SEED | prefix >> 5, (31 & prefix) << 3])
    seed = base64.b32encode(header + raw + bytes(nkeys.crc16_checksum(header + raw)))
    seed_file = tmp / "user.nk"
    seed_file.write_bytes(seed.rstrip(b"="))
    seed_file.chmod(0o600)
    public = encode_public_key(bytes(nacl.signing.SigningKey(raw).verify_key), prefix)
    return public, seed_file


async def test_an_nkey_seed_file_reaches_a_server_that_requires_it(tmp_path: Path) -> None:
    public, seed_file = _user_nkey(tmp_path)
    assert public.startswith("U") and len(public) == 56
    conf = tmp_path / "nkey.conf"
    conf.write_text(f"authorization {{ users = [ {{ nkey: {public} }} ] }}\n")
    srv = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)]).start()
    try:
        with pytest.raises(ConnectionError, match="Authorization Violation"):
            await connect(srv.url, initial_timeout=1.5)
        await _round_trip(NatsOptions(url=srv.url, nkey_seed_file=str(seed_file)))
    finally:
        srv.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=vinculum test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=tmp)
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
             cwd=tmp)
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
async def test_tls_with_a_private_ca_reaches_a_server_that_requires_it(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    srv = NatsServer(data_dir=tmp_path / "nats",
                     extra_args=["--tls", "--tlscert", str(cert), "--tlskey", str(key)]).start()
    try:
        # without the CA the server's certificate does not verify
        with pytest.raises(ConnectionError):
            await connect(srv.url, initial_timeout=1.5)
        await _round_trip(NatsOptions(url=srv.url, tls_ca=str(ca)))
    finally:
        srv.stop()
