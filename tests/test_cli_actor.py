"""latticectl actor sign/inspect, push and get actors, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import stat
from pathlib import Path

import nkeys
import pytest
import wasmtime
import yaml
from click.testing import CliRunner

from cli.examples import build_examples, host_runtime_args
from cli.localstack import LocalStack
from hostagent.main import main as host_command
from lattice.claims import ClaimsError, encode_seed, public_key, verify_module
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from tests.cliutil import run

KEYS = Path(__file__).resolve().parent.parent / "examples" / "actors" / "keys"
WAT = '(module (memory (export "memory") 1) (data (i32.const 0) "hello"))'


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "echo.wasm"
    path.write_bytes(wasmtime.wat2wasm(WAT))
    return path


def test_sign_creates_seeds_once(env: dict[str, str], module: Path, tmp_path: Path) -> None:
    out = tmp_path / "echo_s.wasm"
    first = run(env, "actor", "sign", str(module), "--name", "echo", "--cap",
                "wascc:messaging", "-o", str(out))
    assert first.exit_code == 0, first.output
    actor_id = first.stdout.strip()
    keys = tmp_path / "keys"  # next to LATTICECTL_CONFIG
    for name in ("account.nk", "echo.nk"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
        assert f"created seed {keys / name}" in first.stderr
    assert actor_id == public_key((keys / "echo.nk").read_bytes(), "M")
    claims = verify_module(out.read_bytes())
    assert claims.subject == actor_id and claims.capabilities == ("wascc:messaging",)
    # Signing the same name again reuses the seeds: same id, nothing created.
    again = run(env, "actor", "sign", str(out), "--name", "echo", "-o", str(out))
    assert again.exit_code == 0 and again.stdout.strip() == actor_id
    assert again.stderr == ""
    assert verify_module(out.read_bytes()).capabilities == ()


def test_sign_with_demo_seeds_gives_the_documented_id(env: dict[str, str], module: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "s.wasm"
    result = run(env, "actor", "sign", str(module), "--name", "echo",
                 "--account-seed", str(KEYS / "account.nk"),
                 "--module-seed", str(KEYS / "echo.nk"), "--expires-in", "1h",
                 "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "MAJEM2O2J4G2RZP3EBFQ2F2EMVNEOUNEUURCHJ3Z5JRSJ65UTICCEK25"
    claims = verify_module(out.read_bytes())
    assert claims.expires is not None and 3590 <= claims.expires - claims.issued_at <= 3600
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--cap", "Bad Cap"), "capability_id 'Bad Cap' has 0 ':'"),
    (("--expires-in", "soon"), "is not a duration"),
    (("--account-seed", "/nonexistent/seed"), "cannot read the account seed"),
])
def test_sign_errors(env: dict[str, str], module: Path, tmp_path: Path,
                     args: tuple[str, ...], message: str) -> None:
    result = run(env, "actor", "sign", str(module), "--name", "x", *args,
                 "-o", str(tmp_path / "o.wasm"))
    assert result.exit_code == 2
    assert message in result.stderr


def test_inspect(env: dict[str, str], module: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.wasm"
    actor_id = run(env, "actor", "sign", str(module), "--name", "echo", "--cap",
                   "wascc:messaging", "--cap", "wascc:keyvalue", "-o", str(out)).stdout.strip()
    table = run(env, "actor", "inspect", str(out))
    assert table.exit_code == 0, table.output
    fields = {line.split()[0]: line.split(None, 1)[1] for line in table.stdout.splitlines()
              if line.split()[0] in ("ID", "NAME", "CAPABILITIES", "VERIFIED", "EXPIRES")}
    assert fields == {"ID": actor_id, "NAME": "echo",
                      "CAPABILITIES": "wascc:messaging, wascc:keyvalue",
                      "VERIFIED": "yes", "EXPIRES": "never"}
    doc = json.loads(run(env, "actor", "inspect", str(out), "-o", "json").stdout)
    assert doc["id"] == actor_id and doc["verified"] is True and doc["problem"] is None
    assert doc["size"] == out.stat().st_size
    # A tampered module: still inspectable, and says why it does not verify.
    tampered = tmp_path / "t.wasm"
    tampered.write_bytes(out.read_bytes().replace(b"hello", b"HELLO"))
    bad = yaml.safe_load(run(env, "actor", "inspect", str(tampered), "-o", "yaml").stdout)
    assert bad["verified"] is False and "differs from the signed hash" in bad["problem"]
    lines = run(env, "actor", "inspect", str(tampered)).stdout.splitlines()
    [verified] = [line for line in lines if line.startswith("VERIFIED")]
    assert verified.split(None, 1)[1].startswith("NO: the module hash")
    unsigned = run(env, "actor", "inspect", str(module))
    assert unsigned.exit_code == 2 and "not signed" in unsigned.stderr


def inspected(env: dict[str, str], path: Path) -> dict[str, str]:
    """``actor inspect``'s table as FIELD -> VALUE."""
    result = run(env, "actor", "inspect", str(path))
    assert result.exit_code == 0, result.output
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1)
                for line in result.stdout.splitlines())


def test_sign_records_tags_revision_and_version(env: dict[str, str], module: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "s.wasm"
    signed = run(env, "actor", "sign", str(module), "--name", "echo", "--ver", "1.2.0",
                 "--rev", "3", "--tag", "demo", "--tag", "echo", "-o", str(out))
    assert signed.exit_code == 0, signed.output
    fields = inspected(env, out)
    assert (fields["TAGS"], fields["VERSION"], fields["REVISION"]) == ("demo, echo", "1.2.0", "3")
    doc = json.loads(run(env, "actor", "inspect", str(out), "-o", "json").stdout)
    assert (doc["tags"], doc["revision"], doc["version"]) == (["demo", "echo"], 3, "1.2.0")
    plain = tmp_path / "p.wasm"
    run(env, "actor", "sign", str(module), "--name", "echo", "-o", str(plain))
    fields = inspected(env, plain)
    assert (fields["TAGS"], fields["VERSION"], fields["REVISION"]) == ("-", "-", "-")
    bad = run(env, "actor", "sign", str(module), "--name", "echo", "--rev", "2147483648",
              "-o", str(plain))
    assert bad.exit_code == 2 and "--rev" in bad.stderr


WASCC = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "wascc"


def test_inspect_a_module_signed_by_wascap(env: dict[str, str]) -> None:
    path = WASCC / "echo.wasm"
    if not path.is_file():
        pytest.skip(f"waSCC's signed actors are not here ({path} is absent; they are test "
                    "data kept outside the project, see issue 13)")
    fields = inspected(env, path)
    assert fields["ID"] == "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2"
    assert fields["ISSUER"] == "AAGRUXXTGSP4C27RWPTMCHCJF56JD53EQPA2R7RPC5VI4E274KPRMMJ5"
    assert (fields["NAME"], fields["CAPABILITIES"], fields["TAGS"]) == (
        "Echo Actor", "wascc:http_server", "example, echo")
    assert (fields["VERIFIED"], fields["EXPIRES"], fields["REVISION"]) == ("yes", "never", "-")
    doc = yaml.safe_load(run(env, "actor", "inspect", str(path), "-o", "yaml").stdout)
    assert doc["verified"] is True and doc["tags"] == ["example", "echo"]


def test_push_and_get_actors(nats_server: NatsServer, lattice_id: str, env: dict[str, str],
                             module: Path, tmp_path: Path) -> None:
    nats = ("--nats-url", nats_server.url, "--lattice", lattice_id)
    empty = run(env, *nats, "get", "actors")
    assert empty.exit_code == 0, empty.output
    assert empty.stdout == "" and "No actors in the registry" in empty.stderr
    ids = {}
    for name, caps in (("echo", ["wascc:messaging"]),
                       ("counter", ["wascc:messaging", "wascc:keyvalue"])):
        out = tmp_path / f"{name}.s.wasm"
        cap_args = [a for c in caps for a in ("--cap", c)]
        ids[name] = run(env, "actor", "sign", str(module), "--name", name, *cap_args,
                        "-o", str(out)).stdout.strip()
    pushed = run(env, *nats, "push", str(tmp_path / "echo.s.wasm"),
                 str(tmp_path / "counter.s.wasm"))
    assert pushed.exit_code == 0, pushed.output
    assert pushed.stdout.splitlines()[0].startswith(f"pushed {ids['echo']} (echo, ")
    table = run(env, *nats, "get", "actors")
    assert table.exit_code == 0, table.output
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["ID", "NAME", "CAPABILITIES", "SIZE"]
    assert rows[1][:3] == [ids["counter"][:12], "counter", "wascc:messaging,wascc:keyvalue"]
    assert rows[2][:3] == [ids["echo"][:12], "echo", "wascc:messaging"]
    doc = json.loads(run(env, *nats, "get", "actor", "echo", "-o", "json").stdout)
    [item] = doc["items"]
    assert item["id"] == ids["echo"] and item["size"] == (tmp_path / "echo.s.wasm").stat().st_size
    names = run(env, *nats, "get", "actors", "-o", "name").stdout.split()
    assert sorted(names) == sorted(f"actor/{i}" for i in ids.values())
    assert "HASH" in run(env, *nats, "get", "actors", "-o", "wide").stdout
    missing = run(env, *nats, "get", "actors", "nope")
    assert missing.exit_code == 2 and "no actor named nope" in missing.stderr


def test_push_refuses_a_module_that_does_not_verify(nats_server: NatsServer, lattice_id: str,
                                                    env: dict[str, str], module: Path,
                                                    tmp_path: Path) -> None:
    nats = ("--nats-url", nats_server.url, "--lattice", lattice_id)
    out = tmp_path / "s.wasm"
    run(env, "actor", "sign", str(module), "--name", "echo", "-o", str(out))
    out.write_bytes(out.read_bytes().replace(b"hello", b"HELLO"))
    result = run(env, *nats, "push", str(out))
    assert result.exit_code == 2
    assert "differs from the signed hash" in result.stderr
    assert "nothing was pushed" in result.stderr
    assert run(env, *nats, "get", "actors").stdout == ""
    with pytest.raises(ClaimsError):
        verify_module(out.read_bytes())


def test_push_without_nats_is_one_line(env: dict[str, str], tmp_path: Path,
                                       module: Path) -> None:
    out = tmp_path / "s.wasm"
    run(env, "actor", "sign", str(module), "--name", "echo", "-o", str(out))
    result = run(env, "push", str(out))
    assert result.exit_code == 2 and "no NATS URL" in result.stderr
    closed = run(env, "--nats-url", "nats://127.0.0.1:1", "push", str(out))
    assert closed.exit_code == 2 and "cannot reach NATS" in closed.stderr
    assert len(closed.stderr.strip().splitlines()) == 1


def test_seed_files_are_interchangeable_with_nkeys(tmp_path: Path) -> None:
    seed = encode_seed(b"\x01" * 32, "A")
    assert nkeys.from_seed(seed).public_key.decode() == public_key(seed, "A")


@pytest.mark.parametrize("words", [("actor",), ("actor", "sign"), ("actor", "inspect"),
                                   ("push",), ("get", "actors")], ids=" ".join)
def test_help_has_examples(words: tuple[str, ...], env: dict[str, str]) -> None:
    result = run(env, *words, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout and "latticectl " + words[0] in result.stdout


def test_up_signs_and_pushes_the_example_actors(tmp_path: Path) -> None:
    actors = tmp_path / "actors"
    shutil.copytree(KEYS, actors / "keys")
    (actors / "echo.wat").write_text(WAT)
    (actors / "counter.wat").write_text(";; capabilities: wascc:keyvalue\n" + WAT)
    (actors / "nokey.wat").write_text(WAT)
    built = {a.name: a.claims for a in build_examples(actors)}
    assert sorted(built) == ["counter", "echo"]
    assert built["echo"].capabilities == ("wascc:messaging",)
    assert built["counter"].capabilities == ("wascc:keyvalue",)
    stack = LocalStack(state_dir=tmp_path / "state", lattice="demo", hosts=0, host_labels={},
                       repo=str(tmp_path), with_agent=False, actors_dir=actors)
    state = stack.start(detach=False)
    try:
        assert state.actors == {
            "counter": "MCIW2DU4NT4OHMJOH7PFZLBJRJ54J7R3PIHD5FTS3FVCMHU7HQN6BPY2",
            "echo": "MAJEM2O2J4G2RZP3EBFQ2F2EMVNEOUNEUURCHJ3Z5JRSJ65UTICCEK25"}

        async def listing() -> list[str]:
            nc = await connect(state.nats())
            try:
                return [r.name for r in await Gantry(nc, "demo").list()]
            finally:
                await nc.close()

        assert asyncio.run(listing()) == ["counter", "echo"]
    finally:
        stack.stop()


def test_example_manifests_name_the_demo_actors() -> None:
    ids = {public_key((KEYS / f"{n}.nk").read_bytes(), "M") for n in ("echo", "counter")}
    repo = KEYS.parent.parent / "repo"
    named = set()
    for path in repo.rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        spec = doc["spec"]
        named |= {a["id"] for a in spec.get("actors", [])}
        named |= {b["actor"] for b in spec.get("bindings", [])}
    assert named == ids


def test_up_asks_for_the_wasm_runtime_only_when_hosts_have_it() -> None:
    host_help = CliRunner().invoke(host_command, ["--help"]).stdout
    offered = "--runtime" in host_help and "wasm" in host_help
    assert host_runtime_args() == (["--runtime", "wasm"] if offered else [])
