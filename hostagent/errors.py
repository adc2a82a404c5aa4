"""The host agent's error root: what a caller of :mod:`hostagent` catches.

Every error the host raises derives from :class:`HostAgentError`, and through it from
:class:`lattice.errors.VinculumError`: :class:`~hostagent.workload.RuntimeFailure` (the
runtime could not do what a command asked), :class:`~hostagent.wasm.wapc.GuestError` (a
guest call failed), :class:`~hostagent.wasm.compile.CompileRefused` (a module is not
compiled) and :class:`~hostagent.providers.base.ProviderError` (a provider refuses a
call). The first three are also :class:`~lattice.errors.PermanentError`: the host refuses
the command, and the agent does not retry it until its inputs change.
"""

from __future__ import annotations

from lattice.errors import VinculumError


class HostAgentError(VinculumError):
    """Root of every error the host agent raises."""
