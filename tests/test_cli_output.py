"""cli.output: kubectl-style ages, tables and the stable -o yaml/json documents (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cli.output import (
    age,
    duration,
    entity_document,
    list_document,
    plural,
    render,
    spec_of,
    table,
)
from lattice.status import Count, DeploymentStatus, Phase

NOW = datetime(2025, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (5, "5s"), (59, "59s"), (60, "1m"), (3 * 60 + 59, "3m"), (3599, "59m"),
    (3600, "1h"), (2 * 3600 + 1, "2h"), (86399, "23h"), (86400, "1d"), (4 * 86400, "4d"),
    (364 * 86400, "364d"), (365 * 86400, "1y"), (-3, "0s"),
])
def test_duration_like_kubectl(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("n", "text"), [(0, "0 hosts"), (1, "1 host"), (2, "2 hosts")])
def test_plural(n: int, text: str) -> None:
    assert plural(n, "host") == text
    assert plural(n, "process", "processes") == f"{n} {'process' if n == 1 else 'processes'}"


def test_age_of_a_time_and_of_nothing() -> None:
    assert age(NOW - timedelta(minutes=3, seconds=10), NOW) == "3m"
    assert age(None, NOW) == "<unknown>"
    assert age(datetime(2025, 1, 5, 11, 0), NOW) == "1h"  # naive times are UTC


def test_table_aligns_columns_three_spaces_apart() -> None:
    lines = table(("NAME", "READY"), [["a-long-name", "1/1"], ["b", "10/12"]])
    assert lines == [
        "NAME          READY",
        "a-long-name   1/1",
        "b             10/12",
    ]


def test_documents_have_spec_and_status_and_lists_have_items() -> None:
    dep = DeploymentStatus(name="d", revision="abc", phase=Phase.SYNCED,
                           spec={"actors": [{"id": "A"}]}, actors=Count(ready=1, desired=1))
    doc = entity_document(dep)
    assert doc["apiVersion"] == "vinculum.io/v1"
    assert doc["kind"] == "Deployment"
    assert doc["metadata"] == {"name": "d"}
    assert doc["spec"] == {"actors": [{"id": "A"}]}
    assert doc["status"]["phase"] == "Synced"
    assert doc["status"]["actors"] == {"ready": 1, "desired": 1}
    assert set(doc["status"]) == {"revision", "phase", "actors", "providers", "placements",
                                  "conditions", "created"}
    listed = list_document([doc])
    assert listed["kind"] == "List" and listed["items"] == [doc]
    assert json.loads(render(listed, "json")) == listed
    assert yaml.safe_load(render(listed, "yaml")) == listed


def test_a_whole_manifest_recorded_as_spec_gives_its_spec_and_labels() -> None:
    dep = DeploymentStatus(name="d", spec={
        "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "x"}},
        "spec": {"actors": []}})
    assert spec_of(dep) == {"actors": []}
    assert entity_document(dep)["metadata"] == {"name": "d", "labels": {"app": "x"}}
