"""The reconciler's errors, under one root, and the record a failed action leaves.

:class:`ReconcilerError` is what a caller of the reconciler catches. Its subclasses also
carry the kernel's retry policy (:mod:`lattice.errors`), which the executor acts on:

* :class:`CommandUnanswered` (transient): a host did not answer a command, or answered
  with something unreadable; retried after the delay it carries, else after the backoff.
* :class:`CommandRefused` (permanent): a host refused a command (unknown capability, bad
  claims, an unset variable, a runtime failure); not retried until its inputs change.
* :class:`Unplaceable` (permanent): no host bid in an auction; retried when a host joins
  or changes, and after a slow backoff.
* :class:`LeaseTTLError` (permanent, :mod:`reconciler.lease`): the lease bucket's TTL
  is not ours and cannot be made so.

A failed action is remembered as a :class:`Failure`: its message, and the reason the
assessment shows for it in the Ready condition: ``CommandFailed`` (being retried) or
``CommandRefused`` (waiting for its inputs to change).
"""

from __future__ import annotations

from lattice.errors import PermanentError, TransientError, VinculumError
from lattice.status import Reason


class ReconcilerError(VinculumError):
    """Root of every error the reconciler raises."""


class CommandUnanswered(ReconcilerError, TransientError):
    """A host did not answer command ``op`` (timeout, no responders, an unreadable ack)."""

    def __init__(self, host_id: str, op: str, why: str, *, delay: float | None = None
                 ) -> None:
        super().__init__(f"host {host_id[:12]} did not answer {op}: {why}", delay=delay)
        self.host_id, self.op, self.why = host_id, op, why


class CommandRefused(ReconcilerError, PermanentError):
    """Host ``host_id`` refused command ``op`` with ``reason``."""

    def __init__(self, host_id: str, op: str, reason: str) -> None:
        super().__init__(f"host {host_id[:12]} refused {op}: {reason}")
        self.host_id, self.op, self.reason = host_id, op, reason


class Unplaceable(ReconcilerError, PermanentError):
    """No host bid in an auction; ``message`` carries the decline reasons."""


#: The condition reason of a refused command: not retried until its inputs change.
REFUSED: str = Reason.COMMAND_REFUSED
#: The condition reason of a failed command that is retried after a delay.
RETRYING: str = Reason.COMMAND_FAILED


class Failure(str):
    """The message of an action's last failure (a ``str``, as status shows it), with the
    condition ``reason`` it stands for: :data:`REFUSED` or :data:`RETRYING`."""

    reason: str

    def __new__(cls, message: str, reason: str = RETRYING) -> Failure:
        self = super().__new__(cls, message)
        self.reason = reason
        return self


def reason_of(message: str) -> str:
    """The condition reason of a failure message (:class:`Failure`, else a plain ``str``:
    :data:`RETRYING`)."""
    return message.reason if isinstance(message, Failure) else RETRYING
