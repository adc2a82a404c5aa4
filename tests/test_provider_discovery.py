"""Third-party providers: a distribution installed next to vinculum that registers a class
under the ``vinculum.providers`` entry-point group is found by the registry and started by
the wasm runtime; entry points that do not load are logged and skipped, the rest still
count. The distribution is real metadata (a ``.dist-info`` on ``sys.path``), read by
``importlib.metadata`` as for any installed package."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostagent.providers.registry import BUILTINS, GROUP, discover
from hostagent.wasm.runtime import WasmRuntime
from lattice.protocol import ProviderInstance, new_id, utcnow

MODULE = "vinculum_thermo_test"
PROVIDER = '''
class Thermometer:
    capability_id = "acme:thermometer"
    vendor_id = "acme"

    def __init__(self, ctx):
        self.ctx = ctx
        self.started = False

    async def start(self):
        self.started = True

    async def stop(self):
        self.started = False

    async def bind(self, actor_id, values):
        pass

    async def unbind(self, actor_id):
        pass

    def host_call(self, actor_id, operation, payload):
        return b"21.5"

    def state(self):
        return {"celsius": "21.5"}


class Nameless:
    """No capability_id: loads, but is not a provider."""
'''
ENTRY_POINTS = f"""\
[{GROUP}]
thermometer = {MODULE}:Thermometer
missing-module = {MODULE}_gone:Thermometer
missing-class = {MODULE}:Barometer
nameless = {MODULE}:Nameless
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution ``acme-thermo`` in ``tmp_path``, on ``sys.path`` for the test."""
    (tmp_path / f"{MODULE}.py").write_text(PROVIDER)
    info = tmp_path / "acme_thermo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-thermo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates importlib's caches
    try:
        yield tmp_path
    finally:
        sys.modules.pop(MODULE, None)


def test_a_third_party_provider_is_discovered_and_broken_entry_points_are_skipped(
    third_party: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = discover()
    cls = found[("acme:thermometer", "acme")]
    assert cls.__module__ == MODULE and cls.__name__ == "Thermometer"
    assert sys.modules[MODULE].__file__ == str(third_party / f"{MODULE}.py")
    assert {(c.capability_id, c.vendor_id) for c in BUILTINS} < set(found)
    warned = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    for name in ("missing-module", "missing-class", "nameless"):
        assert any(f"provider entry point {name} (" in w and "does not load" in w
                   for w in warned), (name, warned)
    assert len(warned) == 3


def test_without_the_distribution_nothing_of_it_is_found() -> None:
    assert ("acme:thermometer", "acme") not in discover()


async def test_the_wasm_runtime_starts_a_third_party_provider(third_party: Path) -> None:
    runtime = WasmRuntime(None, "default")
    inst = ProviderInstance(capability_id="acme:thermometer", vendor_id="acme",
                            instance_id=new_id(), started_at=utcnow())
    try:
        await runtime.start_provider(inst)
        assert runtime.provider_state(inst) == {"celsius": "21.5"}
        await runtime.stop_provider(inst)
    finally:
        await runtime.close()
