"""``latticectl up`` / ``down``: a whole local lattice on one machine (filled in below)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
