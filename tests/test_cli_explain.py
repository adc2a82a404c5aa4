"""`latticectl explain KIND[.FIELD...]`: the manifest schema (the pydantic models'
model_json_schema) as kubectl explain prints it; unknown kinds and fields exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.explain_cmd import explain, explain_lines, type_name
from cli.output import NotFound
from lattice.manifests import Deployment


def block(lines: list[str], title: str) -> list[str]:
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and
                not lines[i].startswith(" ")), len(lines))
    return lines[start + 1:end]


def test_a_kind_lists_its_top_fields() -> None:
    lines = explain_lines("deployment")
    assert lines[:2] == ["KIND:     Deployment", "VERSION:  vinculum.io/v1"]
    fields = [line.split() for line in block(lines, "FIELDS:") if line.strip()]
    assert ["metadata", "<Metadata>", "-required-"] in fields
    assert ["spec", "<DeploymentSpec>", "-required-"] in fields
    assert ["value:", "Deployment"] in fields
    assert "Actors and capability providers" in block(lines, "DESCRIPTION:")[0]


def test_a_field_with_types_bounds_and_descriptions() -> None:
    lines = explain_lines("deploy.spec.actors")
    assert "FIELD:    actors <[]ActorSpec>" in lines
    assert "`replicas` instances" in " ".join(block(lines, "DESCRIPTION:"))  # reST made plain
    fields = block(lines, "FIELDS:")
    text = "\n".join(fields)
    assert fields[0].split() == ["id", "<string>", "-required-"]
    assert "default: 1; minimum 0; maximum 10000" in text
    assert any(line.split()[:2] == ["limits", "<ActorLimits>"] for line in fields)
    assert any(line.split()[:2] == ["spread", "<[]SpreadShare>"] for line in fields)
    assert "at most 16" in text  # the spread's maxItems


def test_leaves_and_maps() -> None:
    leaf = explain_lines("bs.spec.bindings.values")
    assert "FIELD:    values <map[string]string>" in leaf and "FIELDS:" not in leaf
    mib = explain_lines("deployment.spec.actors.limits.memory_mib")
    assert "FIELD:    memory_mib <integer>" in mib
    assert block(mib, "DESCRIPTION:") == ["    minimum 1; maximum 4096"]


def test_recursive_is_the_tree_of_names_and_types() -> None:
    lines = explain_lines("deploy", recursive=True)
    fields = block(lines, "FIELDS:")
    assert "" not in fields
    nested = [line for line in fields if line.lstrip().startswith("cpu_ms_per_call")]
    assert nested and nested[0].startswith(" " * 8)  # metadata > spec > actors > limits
    columns = {line.index("<") for line in fields}
    assert len(columns) == 1  # one column of types


def test_every_field_of_the_schema_is_reachable() -> None:
    """Each property the schema has can be explained by its path (nothing hidden)."""
    schema = Deployment.model_json_schema()
    defs = schema["$defs"]
    for field in defs["ActorSpec"]["properties"]:
        assert f"FIELD:    {field} <" in "\n".join(explain_lines(f"deploy.spec.actors.{field}"))
    assert type_name(defs["ActorSpec"]["properties"]["limits"], defs) == "ActorLimits"


@pytest.mark.parametrize(("target", "why"), [
    ("pods", "no kind 'pods'"),
    ("deployment.spec.replicas", "field 'replicas' does not exist in Deployment.spec"),
    ("deployment.spec.actors.id.x", "it has no fields"),
])
def test_unknown_is_not_found(target: str, why: str) -> None:
    with pytest.raises(NotFound, match=why):
        explain_lines(target)


def test_command_exit_codes(tmp_path: Path) -> None:
    ok = CliRunner().invoke(explain, ["deploy.spec.providers"])
    assert ok.exit_code == 0 and "FIELD:    providers <[]ProviderSpec>" in ok.stdout
    missing = CliRunner().invoke(explain, ["deploy.nope"])
    assert missing.exit_code == 1 and "field 'nope' does not exist" in missing.stderr
    usage = CliRunner().invoke(explain, [])
    assert usage.exit_code == 2
