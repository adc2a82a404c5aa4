"""Errors of the git side, each encoding its retry policy (see :mod:`lattice.errors`).

Failures of the ``git`` binary are wrapped at the boundary in :class:`GitCommandError`,
which keeps the command and git's own message; :func:`is_race` tells a lost race (someone
else moved the ref first: retry) from anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

from lattice.errors import PermanentError, TransientError, VinculumError

#: Fragments of git's messages that mean "someone else updated the ref first".
RACE_MARKERS = (
    "fetch first",
    "non-fast-forward",
    "cannot lock ref",
    "incorrect old value",
    "failed to update ref",
    "[rejected]",
    "stale info",
    "index.lock",
    "unable to update local ref",
)


class GitSyncError(VinculumError):
    """Root of the errors raised by :mod:`gitsync`."""


class GitCommandError(GitSyncError):
    """A ``git`` command failed; ``stderr`` is git's message."""

    def __init__(self, args: Sequence[str], status: int, stderr: str) -> None:
        first = next((ln for ln in stderr.strip().splitlines() if ln.strip()), "no message")
        super().__init__(f"git {' '.join(args[:2])} failed ({status}): {first.strip()}")
        self.args_list = list(args)
        self.status = status
        self.stderr = stderr

    @property
    def is_race(self) -> bool:
        return is_race(self.stderr)


def is_race(stderr: str) -> bool:
    """True when git's message says a ref moved under us (worth a fetch and a retry)."""
    low = stderr.lower()
    return any(marker in low for marker in RACE_MARKERS)


class SourceError(GitSyncError, PermanentError):
    """The repository cannot be opened as configured (not a repo, no such branch...)."""


class NoHeadError(GitSyncError, TransientError):
    """The branch has no commit yet (an empty repository); try again later."""


class FetchError(GitSyncError, TransientError):
    """Fetching the remote failed; the last fetched head stays in force."""


class PushError(GitSyncError, TransientError):
    """Pushing failed after every retry."""


class ApplyError(GitSyncError, PermanentError):
    """``apply``/``delete`` refused: the message says why and what to do."""


class InvalidManifestsError(ApplyError):
    """Some documents given to ``apply`` are invalid; ``errors`` lists them."""

    def __init__(self, errors: Sequence[str]) -> None:
        n = len(errors)
        super().__init__(f"{n} error{'s' * (n != 1)} in the given manifests; nothing written")
        self.errors = list(errors)
