"""``latticectl convert -f app.yaml``: wadm's OAM Applications as native manifests.

Reads files (or a directory, or stdin) the way ``apply`` does, converts every
``core.oam.dev/v1beta1`` ``Application`` document with :func:`lattice.oam.convert` (through
the loader, so the checks and limits are the agent's own) and prints the result: a YAML
stream of Deployment and BindingSet documents, each in ``apply``'s canonical form, or with
``-o json`` a ``List``. Native documents in the input are printed as they validate. Nothing
is written and no lattice is asked: the output is what the agent would reconcile towards.
A document that cannot be converted is reported at ``file:line: field: reason`` (exit 2).
"""

from __future__ import annotations

from typing import Any

import click

from cli.apply_cmd import read_inputs
from cli.output import list_document, render
from cli.settings import CliError
from gitsync.apply import load_inputs
from lattice.manifest_loader import to_yaml
from lattice.manifests import Manifest


def document(manifest: Manifest) -> dict[str, Any]:
    """One entity as ``apply`` writes it: apiVersion and kind first, then the fields that
    were set. Pure."""
    body = manifest.model_dump(mode="json", exclude_unset=True, exclude={"apiVersion", "kind"})
    return {"apiVersion": manifest.apiVersion, "kind": manifest.kind, **body}


def converted_text(manifests: list[Manifest], fmt: str) -> str:
    """The converted entities as a YAML stream (``---`` between documents) or a JSON
    ``List``. Pure."""
    if fmt == "json":
        return render(list_document([document(m) for m in manifests]), "json")
    return "---\n".join(to_yaml(m) for m in manifests).rstrip("\n")


@click.command("convert")
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE|DIR|-",
              help="OAM Application files to convert (repeatable).")
@click.option("-o", "--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="Output format.")
def convert_cmd(filenames: tuple[str, ...], fmt: str) -> None:
    """Print wadm OAM Applications (core.oam.dev/v1beta1) as native manifests.

    Actor components become a Deployment's actors (properties.id is their public key),
    capability components its providers, spreadscaler and daemonscaler traits their
    placement, linkdef traits a BindingSet. What has no equivalent is refused with
    file:line and the reason. Writes nothing; `apply -f` takes the same files.

    \b
    Examples:
      latticectl convert -f app.yaml
      latticectl convert -f app.yaml -o json
      latticectl convert -f app.yaml > deployments/app.yaml
    """
    if not filenames:
        raise CliError("nothing to convert: pass -f FILE, -f DIR or -f -")
    click.echo(converted_text(load_inputs(read_inputs(filenames)), fmt))


COMMANDS: list[click.Command] = [convert_cmd]
