"""The dashboard's pure view models: rows, the source panel, the lattice picture."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cli.dashboard import model
from cli.dashboard.model import HostSeen
from lattice.protocol import (
    ANN_MANAGED_BY,
    ANN_NAME,
    MANAGED_BY_VALUE,
    ActorInstance,
    HostInventory,
    ProviderInstance,
)
from lattice.status import CommitSignature, Phase, SignatureState
from tests.cliutil import HOST_PI, UNPLACED, report
from tests.gitrepo import ACTOR

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CSS = (Path(model.__file__).parent / "static" / "dashboard.css").read_text()


def inventory(host_id: str, name: str, labels: dict[str, str], *,
              owners: tuple[str, ...] = (), unmanaged: bool = False) -> HostInventory:
    actors = [ActorInstance(actor_id=ACTOR, instance_id=f"i-{owner}", started_at=NOW,
                            annotations={ANN_MANAGED_BY: MANAGED_BY_VALUE, ANN_NAME: owner})
              for owner in owners]
    providers = [ProviderInstance(capability_id="wascc:messaging", vendor_id="nats",
                                  instance_id="p", started_at=NOW)] if unmanaged else []
    return HostInventory(host_id=host_id, name=name, labels=labels, started_at=NOW,
                         actors=actors, providers=providers)


def test_rows_carry_the_phase_word_and_ready_counts() -> None:
    r = report("a" * 40, phase=Phase.DEGRADED)
    (row,) = model.entity_rows(r.deployments, NOW)
    assert (row.name, row.phase, row.ready) == ("amazing-deployment", "Degraded", "2/3")
    assert row.detail == "actors 1/1, providers 1/2"
    assert row.message == UNPLACED and row.href == "/deployments/amazing-deployment"
    (bs,) = model.entity_rows(r.bindingsets, NOW)
    assert (bs.kind, bs.ready, bs.href) == ("bindingset", "1/1", "/bindingsets/amazing-bindings")


def test_every_phase_has_a_styled_class() -> None:
    for phase in Phase:
        assert re.search(rf"\.{model.phase_class(phase.value)}\b", CSS), phase


@given(st.text(min_size=1, max_size=40))
def test_owner_colour_is_stable_and_styled(name: str) -> None:
    cls = model.owner_colour(name)
    assert cls == model.owner_colour(name)
    assert f".{cls} " in CSS


def test_source_view_says_signature_and_lag() -> None:
    r = report("b" * 40)
    signature = CommitSignature(state=SignatureState.UNTRUSTED, signer="mallory")
    view = model.source_view(r, branch="main", head="c" * 40, head_subject="s",
                             evaluated=False, signature=signature, now=NOW)
    assert view.signature == "untrusted (mallory)"
    assert not view.in_sync and view.head == "c" * 12 and view.evaluated == "b" * 12
    empty = model.source_view(None, branch="main", head=None, head_subject="",
                              evaluated=True, signature=None, now=NOW)
    assert empty.head == "-" and "no status yet" in empty.message
    assert empty.signature == "not verified"


def test_host_box_marks_owners_and_unmanaged() -> None:
    seen = HostSeen(inventory(HOST_PI, "pi", {"zone": "eu", "hostcore.os": "linux"},
                              owners=("web",), unmanaged=True),
                    answering=False, last_seen=NOW - timedelta(seconds=30))
    box = model.host_box(seen, NOW)
    assert box.state == "gone" and box.last_seen == "30s"
    assert box.labels == (("zone", "eu"),)  # the host's own labels, not hostcore.*
    actor, provider = box.entities
    assert actor.owners == ("web",) and actor.colour == model.owner_colour("web")
    assert not provider.managed and provider.colour is None
    assert provider.ref == "wascc:messaging/default"


def test_a_shared_provider_names_every_owner() -> None:
    assert model._owners({ANN_MANAGED_BY: MANAGED_BY_VALUE, ANN_NAME: "a,b"}) == ("a", "b")
    assert model._owners({ANN_NAME: "a"}) == ()  # not the agent's: unmanaged


labels = st.dictionaries(st.sampled_from(["zone", "region", "leds"]),
                         st.sampled_from(["eu", "us", "12", ""]), max_size=3)


@given(st.lists(labels, max_size=20), st.sampled_from(["zone", "region", "nope", ""]))
def test_picture_shows_each_host_once_in_its_group(host_labels: list[dict[str, str]],
                                                    group_by: str) -> None:
    hosts = [HostSeen(inventory(f"N{i:055d}", f"h{i}", lab), True, NOW)
             for i, lab in enumerate(host_labels)]
    groups = model.picture(hosts, group_by, NOW)
    shown = [h.host_id for g in groups for h in g.hosts]
    assert sorted(shown) == sorted(h.inventory.host_id for h in hosts)
    values = [g.value for g in groups]
    assert values == sorted(values, key=lambda v: (v == "", v))  # the unlabelled last
    for g in groups:
        for box in g.hosts:
            assert dict(box.labels).get(group_by, "") == g.value or group_by.startswith(
                "hostcore.")


def test_history_rows_link_to_the_previous_revision() -> None:
    rows = [model.HistoryRow("1s", r, "Synced", "", "", "", "") for r in ("c", "c", "b", "a")]
    linked = model.with_previous(rows)
    assert [r.previous for r in linked] == ["b", "b", "a", ""]


def test_manifest_yaml_keeps_labels_and_spec() -> None:
    dep = report("a" * 40).deployments["amazing-deployment"]
    text = model.manifest_yaml(dep.model_copy(update={"labels": {"app": "x"}}))
    assert text.startswith("labels:\n  app: x\nspec:\n")
    assert "iot:ledcontroller" in text


def test_placement_rows_put_the_unplaced_last_with_why() -> None:
    dep = report("a" * 40, phase=Phase.DEGRADED).deployments["amazing-deployment"]
    rows = model.placement_rows(dep.placements, NOW)
    assert rows[-1].host_id == "" and rows[-1].reason == UNPLACED
    assert all(r.host_id for r in rows[:-1])


def _rows(phases: list[str]) -> list[model.EntityRow]:
    return [model.EntityRow("deployment", f"d{i:03d}", p, "1/1", "", "", "", "", "hue-0")
            for i, p in enumerate(phases)]


def test_table_puts_what_needs_attention_first_and_pages() -> None:
    rows = _rows(["Synced"] * 5 + ["Degraded", "Invalid", "Progressing"])
    t = model.table(rows, model.Filter(), size=3)
    assert [r.phase for r in t.rows] == ["Invalid", "Degraded", "Progressing"]
    assert (t.total, t.matched, t.pages, t.first) == (8, 8, 3, 1)
    assert t.counts == (("Invalid", 1), ("Degraded", 1), ("Progressing", 1), ("Synced", 5))
    last = model.table(rows, model.Filter(page=99), size=3)  # past the end: the last page
    assert (last.page, last.first, [r.name for r in last.rows]) == (3, 7, ["d003", "d004"])
    synced = model.table(rows, model.Filter(phase="Synced", text="D00"), size=10)
    assert synced.matched == 5 and {r.phase for r in synced.rows} == {"Synced"}


def test_filter_parses_only_what_fits() -> None:
    f = model.Filter.parse({"q": "x" * 500, "phase": "Bogus", "page": "-3"})
    assert (len(f.text), f.phase, f.page) == (100, "", 1)
    assert model.Filter.parse({"page": "nan"}).page == 1
    g = model.Filter(text="web app", phase="Degraded", page=2)
    assert g.query() == "q=web+app&phase=Degraded&page=2"
    assert g.query(page=1) == "q=web+app&phase=Degraded"
    assert model.Filter().query() == ""


@given(st.lists(st.sampled_from(list(model.SEVERITY)), max_size=60),
       st.integers(1, 10), st.integers(1, 7))
def test_pages_show_every_kept_row_once(phases: list[str], page_size: int, pages: int) -> None:
    rows = _rows(phases)
    seen = []
    for page in range(1, pages + 1):
        t = model.table(rows, model.Filter(page=page), size=page_size)
        if t.page == page:
            seen += [r.name for r in t.rows]
    every = model.table(rows, model.Filter(), size=10_000).rows
    assert seen == [r.name for r in every][:len(seen)]
    assert len(set(seen)) == len(seen)
