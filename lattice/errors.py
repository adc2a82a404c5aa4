"""The one error root of vinculum, and the retry policy encoded in its subclasses.

A :class:`TransientError` means "try again after ``delay`` seconds" (a host did not answer,
a push raced), or, without a delay, after the retrier's backoff (:mod:`lattice.backoff`); a
:class:`PermanentError` means "do not retry until the input changes" (an invalid manifest,
a refused command). The reconciler's executor acts on exactly this distinction. Errors from
libraries are wrapped at the boundary and chained with ``from``. Each package has one root
to catch: ``VinculumError`` here, ``GitSyncError``, ``ReconcilerError``, ``HostAgentError``.
"""

from __future__ import annotations


class VinculumError(Exception):
    """Root of every error raised by vinculum's own code."""

    def __init__(self, message: str) -> None:
        super().__init__(f"vinculum: {message}")
        self.message = message


class TransientError(VinculumError):
    """A failure worth retrying after ``delay`` seconds (``None``: the retrier's backoff)."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(VinculumError):
    """A failure that no retry can fix; the input has to change."""


class SelectorError(PermanentError):
    """An affinity rule that does not parse."""

    def __init__(self, rule: str, why: str) -> None:
        super().__init__(f"invalid affinity rule {rule!r}: {why}")
        self.rule = rule
        self.why = why


class NatsServerError(VinculumError):
    """The local nats-server could not be found, started or reached."""
