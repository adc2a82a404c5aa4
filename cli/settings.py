"""Global settings of latticectl: flags, then environment, then the config file context.

Precedence: a flag (``--repo``, ``--nats-url``, ``--lattice``) beats its environment
variable (``LATTICECTL_REPO``, ``LATTICECTL_NATS_URL``, ``LATTICECTL_LATTICE``), which beats
the current context of ``~/.config/latticectl/config.yaml``, which beats the state left by
``latticectl up --detach`` (after ``latticectl down``, the repository it named, kept in
``<state-dir>/last.json`` while it exists). The config file looks like::

    current-context: lab
    contexts:
      lab:
        repo: /srv/gitops
        nats-url: tls://nats.lab:4222
        nats-creds: ~/.nats/lab.creds     # or nats-user + LATTICECTL_NATS_PASSWORD
        nats-tls-ca: ~/.nats/lab-ca.pem
        lattice: default

NATS credentials and TLS files come from the flags of :mod:`lattice.natsflags`, the same
in all three programs (``--nats-creds`` / ``LATTICECTL_NATS_CREDS``, ``--nats-user`` /
``LATTICECTL_NATS_USER`` with ``LATTICECTL_NATS_PASSWORD``, ``--nats-tls-ca`` /
``LATTICECTL_NATS_TLS_CA``, ...), else the context's keys. When the URL is a running
``up``'s (no flag, variable or context names one), its JetStream domain and bucket replicas
come from ``state.json`` too (``--js-domain`` still wins), so commands that touch
JetStream (``gantry push``, ``trust``) work on a ``--cluster`` or leaf lattice without flags.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lattice.natsflags import NatsFlags

if TYPE_CHECKING:
    from lattice.natsutil import NatsOptions


class CliError(click.ClickException):
    """A domain error: one line saying what is wrong and what to do; no traceback."""

    exit_code = 2


def config_path() -> Path:
    env = os.environ.get("LATTICECTL_CONFIG")
    if env:
        return Path(env)
    import platformdirs  # imported when used: `latticectl --help` stays fast

    return Path(platformdirs.user_config_dir("latticectl")) / "config.yaml"


def default_state_dir() -> Path:
    env = os.environ.get("LATTICECTL_STATE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_state_dir("vinculum"))


#: The keys a context may set (all strings).
CONTEXT_KEYS = ("repo", "nats-url", "nats-creds", "nats-user", "nats-tls-ca", "lattice")


def load_context(name: str | None) -> dict[str, Any]:
    """The named (or current) context of the config file; empty when there is none.
    A file of the wrong shape is a :class:`CliError` naming the file and the field."""
    path = config_path()
    if not path.is_file():
        if name:
            raise CliError(f"context {name!r} requested but {path} does not exist")
        return {}
    import yaml

    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path}: expected a mapping with current-context and contexts, "
                       f"got {_kind(doc)}")
    contexts = doc.get("contexts") or {}
    if not isinstance(contexts, dict):
        raise CliError(f"{path}: contexts: expected a mapping of context names to "
                       f"settings, got {_kind(contexts)}")
    chosen = name or doc.get("current-context")
    if not chosen:
        return {}
    if not isinstance(chosen, str):
        raise CliError(f"{path}: current-context: expected a context name, got "
                       f"{_kind(chosen)}")
    if chosen not in contexts:
        raise CliError(f"context {chosen!r} not found in {path}; known: "
                       f"{sorted(map(str, contexts))}")
    ctx = contexts[chosen] or {}
    if not isinstance(ctx, dict):
        raise CliError(f"{path}: contexts.{chosen}: expected a mapping of settings, got "
                       f"{_kind(ctx)}")
    for key, value in ctx.items():
        if key not in CONTEXT_KEYS:
            raise CliError(f"{path}: contexts.{chosen}.{key}: unknown setting; known: "
                           f"{', '.join(CONTEXT_KEYS)}")
        if value is not None and not isinstance(value, str):
            raise CliError(f"{path}: contexts.{chosen}.{key}: expected a string, got "
                           f"{_kind(value)}")
    return dict(ctx)


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: what is wrong and where. Pure."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _kind(value: object) -> str:
    """How a YAML value reads in an error: ``int 5``, ``list``. Pure."""
    if isinstance(value, dict | list):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


def load_up_state(state_dir: Path) -> dict[str, Any]:
    """What ``latticectl up`` recorded (NATS URL, repo, pids), or empty."""
    f = state_dir / "state.json"
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


#: No NATS flag given.
NO_NATS_FLAGS = NatsFlags()


@dataclass
class Settings:
    """Shared CLI state, one per invocation (``ctx.obj``)."""

    repo: str | None = None
    nats_url: str | None = None
    lattice: str = "default"
    context: str | None = None
    state_dir: Path = Path()
    debug: bool = False
    #: credentials and TLS files: the flags', else the context's, else a running up's
    nats_flags: NatsFlags = NO_NATS_FLAGS
    #: replicas of a JetStream bucket latticectl creates: a running up's (``--cluster``)
    js_replicas: int = 1

    @classmethod
    def resolve(
        cls,
        *,
        repo: str | None,
        lattice: str | None,
        context: str | None,
        state_dir: str | None,
        debug: bool,
        nats: NatsFlags = NO_NATS_FLAGS,
    ) -> Settings:
        sdir = Path(state_dir) if state_dir else default_state_dir()
        conf = load_context(context)
        up = load_up_state(sdir)
        url = nats.url or conf.get("nats-url")
        ours = not url  # the lattice is the running up's: its domain and replicas apply
        return cls(
            repo=repo or conf.get("repo") or up.get("repo") or _last_repo(sdir),
            nats_url=url or up.get("nats_url"),
            lattice=lattice or conf.get("lattice") or up.get("lattice") or "default",
            context=context,
            state_dir=sdir,
            debug=debug,
            nats_flags=replace(
                nats, url=None,
                creds=_path(nats.creds or conf.get("nats-creds"))
                or (None if url else _up_creds(up)),
                user=nats.user or conf.get("nats-user"),
                tls_ca=_path(nats.tls_ca or conf.get("nats-tls-ca")),
                js_domain=nats.js_domain or (_up_str(up, "js_domain") if ours else None)),
            js_replicas=_up_replicas(up) if ours else 1,
        )

    def require_nats(self) -> str:
        if not self.nats_url:
            raise CliError(
                "no NATS URL: pass --nats-url, set LATTICECTL_NATS_URL, or run `latticectl up`"
            )
        return self.nats_url

    def nats(self) -> NatsOptions:
        """How to reach NATS: the URL (required), any credentials or CA, and the JetStream
        domain and bucket replicas (a running ``up``'s unless a flag says otherwise)."""
        return replace(self.nats_flags.options(name="latticectl", url=self.require_nats()),
                       js_replicas=self.js_replicas)

    def repo_path(self) -> str:
        """The repository to work on: the resolved ``repo`` (flag, environment, context,
        then a running ``up``'s), else the current directory."""
        return self.repo or os.getcwd()


def load_last(state_dir: Path) -> dict[str, Any]:
    """What ``latticectl down`` kept of the lattice it stopped (``last.json``: its repo
    and lattice id), or empty."""
    f = state_dir / "last.json"
    try:
        data = json.loads(f.read_text()) if f.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_repo(state_dir: Path) -> str | None:
    """The repository of the lattice ``down`` stopped, while it still exists."""
    repo = load_last(state_dir).get("repo")
    return repo if isinstance(repo, str) and repo and os.path.exists(repo) else None


def _up_creds(up: dict[str, Any]) -> str | None:
    """latticectl's credentials in a secured ``latticectl up``'s state (admin.creds)."""
    creds = up.get("creds")
    found = creds.get("admin") if isinstance(creds, dict) else None
    return found if isinstance(found, str) else None


def _up_str(up: dict[str, Any], key: str) -> str | None:
    """A string field of a running ``up``'s state, else None. Pure."""
    found = up.get(key)
    return found if isinstance(found, str) and found else None


def _up_replicas(up: dict[str, Any]) -> int:
    """The bucket replicas a running ``up`` recorded (``--cluster``: min(3, N)), else 1."""
    found = up.get("replicas")
    return found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else 1


def _path(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else None
