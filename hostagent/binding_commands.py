"""``binding.put`` and ``binding.del`` on a host: link an actor to a provider it runs.

Binding values are kept as templates in the state, inventories and events; only the
runtime sees them resolved (:mod:`hostagent.values`), and a refusal's reason never holds a
resolved secret. A refused ``binding.put`` is announced as a ``binding_put_failed`` event.
"""

from __future__ import annotations

from hostagent.command_base import CommandBase, Emit, Outcome, describe_failure
from hostagent.values import UnresolvedError, redact, resolve
from lattice.protocol import (
    BindingEvent,
    BindingInstance,
    BindingPutFailed,
    DeleteBindingCommand,
    EventType,
    PutBindingCommand,
)


class BindingCommands(CommandBase):
    """The binding commands of :class:`hostagent.commands.CommandHandler`."""

    async def put_binding(self, cmd: PutBindingCommand) -> Outcome:
        where = f"{cmd.capability_id}/{cmd.binding_name}"
        provider = self.state.providers.get((cmd.capability_id, cmd.binding_name))
        if provider is None:
            return self._refuse_binding(cmd, f"no provider for {where} on this host")
        if cmd.vendor_id is not None and cmd.vendor_id != provider.vendor_id:
            return self._refuse_binding(
                cmd, f"provider {where} on this host is vendor {provider.vendor_id}, "
                f"not {cmd.vendor_id}"
            )
        binding = BindingInstance(
            actor_id=cmd.actor_id, capability_id=cmd.capability_id,
            binding_name=cmd.binding_name, vendor_id=provider.vendor_id,
            values=dict(cmd.values), annotations=dict(cmd.annotations),
        )
        key = (cmd.actor_id, cmd.capability_id, cmd.binding_name)
        if self.state.bindings.get(key) == binding:
            return self._ok(changed=False, reason="unchanged")
        try:
            resolved = resolve(cmd.values, self.environ)
        except UnresolvedError as exc:
            return self._refuse_binding(cmd, f"binding of {cmd.actor_id} to {where}: {exc}")
        try:
            await self.runtime.put_binding(binding, resolved.values)
        except Exception as exc:
            return self._refuse_binding(cmd, redact(
                f"binding of {cmd.actor_id} to {where} failed: {describe_failure(exc)}",
                resolved.secrets,
            ))
        self.state.bindings[key] = binding
        self.log.info("binding of %s to %s put (keys %s)",
                      cmd.actor_id, where, sorted(binding.values))
        return self._ok(changed=True,
                        events=[(EventType.BINDING_PUT, self._binding_event(binding, ""))])

    def _refuse_binding(self, cmd: PutBindingCommand, reason: str) -> Outcome:
        """Refuse a ``binding.put`` and announce it; the event names the binding but never
        its values (``reason`` is already free of resolved secrets)."""
        failed = BindingPutFailed(
            host_id=self.state.host_id, actor_id=cmd.actor_id,
            capability_id=cmd.capability_id, binding_name=cmd.binding_name,
            vendor_id=cmd.vendor_id, annotations=dict(cmd.annotations), reason=reason,
        )
        return self._refuse(reason, events=[(EventType.BINDING_PUT_FAILED, failed)])

    async def delete_binding(self, cmd: DeleteBindingCommand) -> Outcome:
        binding = self.state.bindings.get((cmd.actor_id, cmd.capability_id, cmd.binding_name))
        if binding is None:
            return self._ok(changed=False, reason="not bound")
        events = await self._delete_binding(binding, "deleted by command")
        return self._ok(changed=True, events=events)

    async def _delete_binding(self, binding: BindingInstance, reason: str) -> list[Emit]:
        """Remove a binding; a runtime failure is logged and the record goes anyway (the
        provider it belongs to may already be gone)."""
        try:
            await self.runtime.delete_binding(binding)
        except Exception as exc:
            self.log.warning("runtime failed to delete binding of %s to %s/%s: %s",
                             binding.actor_id, binding.capability_id, binding.binding_name,
                             type(exc).__name__)
        self.state.bindings.pop(
            (binding.actor_id, binding.capability_id, binding.binding_name), None
        )
        self.log.info("binding of %s to %s/%s deleted (%s)",
                      binding.actor_id, binding.capability_id, binding.binding_name, reason)
        return [(EventType.BINDING_DELETED, self._binding_event(binding, reason))]

    def _binding_event(self, binding: BindingInstance, reason: str) -> BindingEvent:
        return BindingEvent(
            host_id=self.state.host_id, actor_id=binding.actor_id,
            capability_id=binding.capability_id, binding_name=binding.binding_name,
            vendor_id=binding.vendor_id, values=dict(binding.values),
            annotations=dict(binding.annotations), reason=reason,
        )
