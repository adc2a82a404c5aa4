"""The WebAssembly runtime of a host: signed waPC actors from gantry, Python providers.

:class:`WasmRuntime` implements :class:`hostagent.workload.Runtime`. ``start_actor`` has
the module fetched from the lattice's gantry registry, verified and checked against the
trusted issuers (:mod:`hostagent.wasm.admission`), compiled once per content hash in a
bounded child process (:class:`~hostagent.wasm.modules.ModuleCache`), and instantiated on
a worker thread of its own (:class:`ActorWorker`) under the
:class:`~hostagent.wasm.engine.Limits` of the host or of the instance's ``vinculum.io/limits``
annotation, running ``wapc_init``/``_start`` under the CPU deadline. None of it blocks the
event loop, and starts overlap (:mod:`hostagent.commands`). Any failure is a
:class:`~hostagent.workload.RuntimeFailure` saying why.

Providers are the classes of :mod:`hostagent.providers.registry`, one per (capability,
binding name). ``put_binding`` refuses a capability the actor does not claim, then hands
the resolved values to the provider (never logged). A guest's ``__host_call`` is routed to
the provider of (namespace, binding) if the actor claims the namespace and is bound there.

Guest calls run on the actor's worker thread, so the host's event loop keeps heartbeating;
a trap or a deadline overrun fails that call (logged, reported to the caller) and breaks
that instance: the host stops it and announces ``actor_stopped`` with the reason
(``crashed: ...``), and the agent starts a replacement; the other actors and the host run
on.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.metrics import timed_call
from hostagent.providers.base import Provider, ProviderContext, ProviderError
from hostagent.providers.registry import discover
from hostagent.wasm import rpc
from hostagent.wasm.admission import Admission, Fetch, limits_for, words
from hostagent.wasm.compile import CompileBounds
from hostagent.wasm.engine import TICK_S, EpochTicker, Limits, new_engine
from hostagent.wasm.modules import ModuleCache
from hostagent.wasm.wapc import GuestError, GuestTrap, HostCallError, WapcInstance
from hostagent.workload import BindingKey, RuntimeFailure, binding_key
from lattice.claims import Claims
from lattice.manifests import MAX_CPU_MS_PER_CALL
from lattice.protocol import ActorInstance, BindingInstance, ProviderInstance, Subjects

log = logging.getLogger(__name__)

class ActorWorker:
    """One actor instance and the single thread that owns its wasmtime store."""

    def __init__(self, actor: ActorInstance, claims: Claims) -> None:
        self.actor = actor
        self.claims = claims
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"actor-{actor.actor_id[:6]}-{actor.instance_id[:6]}"
        )
        self.instance: WapcInstance | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the instance's thread, in the caller's context (its log fields:
        the host, the actor called)."""
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, contextvars.copy_context().run, fn, *args)

    async def call(self, operation: str, payload: bytes) -> bytes:
        assert self.instance is not None
        result: bytes = await self.run(self.instance.call, operation, payload)
        return result

    def close(self) -> None:
        # a call in progress ends within its deadline; the thread exits after it
        self.executor.shutdown(wait=False, cancel_futures=True)


class WasmRuntime:
    """Runs waPC actors with wasmtime and capability providers in-process."""

    def __init__(self, nc: Client | None, lattice_id: str, *, limits: Limits | None = None,
                 fetch: Fetch | None = None, trusted_issuers: Iterable[str] = (),
                 cache_dir: Path | None = None, apps_nc: Client | None = None,
                 compile_bounds: CompileBounds | None = None) -> None:
        self.nc = nc
        #: where providers carry application traffic (wascc:messaging): a connection of
        #: its own in a secured lattice, so no actor reaches a control subject through it
        self.apps_nc = apps_nc or nc
        self.lattice_id = lattice_id
        self.limits = limits or Limits()
        self.engine = new_engine()  # compiled code is kept by self.modules, in cache_dir
        self.ticker = EpochTicker(self.engine)
        self.modules = ModuleCache(self.engine, cache_dir=cache_dir, bounds=compile_bounds)
        self._subscribing = asyncio.Lock()  # one rpc subscription per actor
        self.provider_classes = discover()
        self.admission = Admission(nc, lattice_id, fetch=fetch,
                                   trusted_issuers=trusted_issuers)
        self.workers: dict[str, ActorWorker] = {}  # instance id -> worker
        self.by_actor: dict[str, list[ActorWorker]] = {}  # actor id -> its workers
        self.claims: dict[str, Claims] = {}  # actor id -> verified claims
        self.providers: dict[tuple[str, str], Provider] = {}  # (capability, binding name)
        self.bindings: dict[BindingKey, BindingInstance] = {}
        self._turn = itertools.count()
        self.subjects = Subjects(lattice_id)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._actor_subs: dict[str, Subscription] = {}  # actor id -> rpc subscription
        self._binding_subs: dict[BindingKey, Subscription] = {}
        #: told when an instance traps or overruns during a call; the host stops it and
        #: publishes ``actor_stopped`` with the reason (set by :class:`hostagent.host.Host`)
        self.on_crash: Callable[[ActorInstance, str], Coroutine[Any, Any, None]] | None = None
        self._crashes: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:  # never show binding values
        return (f"WasmRuntime(actors={len(self.workers)}, providers={len(self.providers)}, "
                f"bindings={len(self.bindings)})")

    async def close(self) -> None:
        """Stop every compile, provider and worker, and the epoch ticker."""
        await self.modules.close()
        for key, provider in list(self.providers.items()):
            try:
                await provider.stop()
            except Exception:
                log.exception("provider %s/%s failed to stop", *key)
        self.providers.clear()
        for sub in [*self._actor_subs.values(), *self._binding_subs.values()]:
            await self._unsubscribe(sub)
        self._actor_subs.clear()
        self._binding_subs.clear()
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
        self.by_actor.clear()
        self._interrupt_guests()
        self.ticker.close()

    def _interrupt_guests(self) -> None:
        """Advance the epoch past every deadline: guest code still running (a call, the
        ``wapc_init`` of an abandoned start) traps now, not never once the ticker stops."""
        longest = max(MAX_CPU_MS_PER_CALL / 1000, self.limits.call_timeout_s)
        for _ in range(round((longest + self.limits.host_wait_s) / TICK_S) + 1):
            self.engine.increment_epoch()

    # ------------------------------------------------------------ actors

    async def _verified(self, actor_id: str) -> tuple[bytes, Claims]:
        wasm, claims = await self.admission.admit(actor_id)
        self.claims[actor_id] = claims
        return wasm, claims

    async def start_actor(self, actor: ActorInstance) -> None:
        """Admit, compile and instantiate one instance (see module doc). Cancelled (the
        host is stopping), it abandons the instance: its ``wapc_init`` ends at its deadline."""
        self._loop = asyncio.get_running_loop()
        limits = limits_for(actor.annotations, self.limits)
        wasm, claims = await self._verified(actor.actor_id)
        module = await self.modules.get(wasm)  # or RuntimeFailure: why it is not compiled
        worker = ActorWorker(actor, claims)
        host_call = self._host_call_for(actor.actor_id, claims)
        name = f"{claims.name or 'actor'} ({actor.actor_id[:8]})"

        def instantiate() -> WapcInstance:
            return WapcInstance(self.engine, module, name=name, host_call=host_call,
                                limits=limits, ticker=self.ticker)

        try:
            worker.instance = await worker.run(instantiate)
        except BaseException as exc:  # CancelledError too: the thread finishes on its own
            worker.close()
            if isinstance(exc, Exception):
                raise RuntimeFailure(words(exc)) from exc
            raise
        self.workers[actor.instance_id] = worker
        self.by_actor.setdefault(actor.actor_id, []).append(worker)
        await self._serve(actor.actor_id)
        log.info("actor %s (%s) instance %s running", actor.actor_id, claims.name,
                 actor.instance_id)

    async def _serve(self, actor_id: str) -> None:
        """Subscribe to the actor's lattice RPC subject, once for all its instances."""
        if self.nc is None:
            return
        async with self._subscribing:  # overlapping starts of one actor subscribe once
            if actor_id in self._actor_subs or actor_id not in self.by_actor:
                return
            self._actor_subs[actor_id] = await self.nc.subscribe(
                rpc.actor_subject(self.subjects, actor_id), queue=rpc.ACTOR_QUEUE,
                cb=self._on_actor_rpc)

    async def stop_actor(self, actor: ActorInstance) -> None:
        worker = self.workers.pop(actor.instance_id, None)
        if worker is not None:
            siblings = [w for w in self.by_actor.get(actor.actor_id, []) if w is not worker]
            if siblings:
                self.by_actor[actor.actor_id] = siblings
            else:
                self.by_actor.pop(actor.actor_id, None)
                sub = self._actor_subs.pop(actor.actor_id, None)
                if sub is not None:
                    await self._unsubscribe(sub)
            worker.close()
        log.info("actor %s instance %s stopped", actor.actor_id, actor.instance_id)

    async def call_actor(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        """Call ``operation`` on an instance of ``actor_id``: a local one (round robin), or
        one on another host through lattice RPC."""
        if actor_id in self.by_actor or self.nc is None:
            return await timed_call(actor_id, self._call_local(actor_id, operation, payload))
        headers = {rpc.OP_HEADER: operation}
        rpc.ensure_fits(self.nc, f"the payload of {operation} for actor {actor_id}", payload,
                        headers)
        try:
            reply = await self.nc.request(
                rpc.actor_subject(self.subjects, actor_id), payload,
                timeout=self.limits.call_timeout_s + 3.0, headers=headers)
        except nats.errors.NoRespondersError:
            raise RuntimeFailure(f"actor {actor_id} has no running instance on the "
                                 "lattice") from None
        except nats.errors.TimeoutError:
            raise RuntimeFailure(f"actor {actor_id} did not answer {operation} in time "
                                 "(another host)") from None
        error = rpc.error_of(reply)
        if error is not None:
            raise RuntimeFailure(error)
        return reply.data

    async def _on_actor_rpc(self, msg: Msg) -> None:
        actor_id = msg.subject.rsplit(".", 1)[-1]
        operation = (msg.headers or {}).get(rpc.OP_HEADER, "")
        call = timed_call(actor_id, self._call_local(actor_id, operation, msg.data))
        await self._answer(msg, call)

    async def _answer(self, msg: Msg, work: Awaitable[bytes]) -> None:
        """Reply to a lattice RPC with what ``work`` returns, or with its error in words."""
        what = f"the reply to {(msg.headers or {}).get(rpc.OP_HEADER, msg.subject)}"
        try:
            data = rpc.ensure_fits(self.nc, what, await work)
        except Exception as exc:
            if msg.reply and self.nc is not None:
                await self.nc.publish(msg.reply, b"", headers=rpc.error_headers(words(exc)))
            return
        if msg.reply:
            await msg.respond(data)

    async def _call_local(self, actor_id: str, operation: str, payload: bytes) -> bytes:
        workers = self.by_actor.get(actor_id)
        if not workers:
            raise RuntimeFailure(f"actor {actor_id} has no running instance on this host")
        worker = workers[next(self._turn) % len(workers)]
        try:
            reply = await worker.call(operation, payload)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # the instance was stopped with this call still queued
            raise RuntimeFailure(f"actor {actor_id} instance {worker.actor.instance_id} "
                                 "stopped before the call ran") from None
        except RuntimeError as exc:  # the executor was shut down: the instance stopped
            raise RuntimeFailure(f"actor {actor_id} instance {worker.actor.instance_id} "
                                 f"stopped: {exc}") from None
        except GuestTrap as exc:
            log.warning("actor %s instance %s crashed in %s: %s", actor_id,
                        worker.actor.instance_id, operation, words(exc))
            if self.on_crash is not None:  # stopped and reported; the caller gets the error
                task = asyncio.create_task(self.on_crash(worker.actor, words(exc)))
                self._crashes.add(task)
                task.add_done_callback(self._crashes.discard)
            raise
        except GuestError as exc:
            log.warning("actor %s instance %s: %s failed: %s", actor_id,
                        worker.actor.instance_id, operation, words(exc))
            raise
        return rpc.ensure_fits(self.nc, f"the reply of actor {actor_id} to {operation}", reply)

    def _host_call_for(self, actor_id: str,
                       claims: Claims) -> Callable[[str, str, str, bytes], bytes]:
        def host_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
            if namespace not in claims.capabilities:
                raise HostCallError(f"actor does not claim capability {namespace}")
            provider = self.providers.get((namespace, binding))
            if (actor_id, namespace, binding) not in self.bindings or provider is None:
                return self._remote_host_call(actor_id, namespace, binding, operation, payload)
            try:
                return provider.host_call(actor_id, operation, payload)
            except ProviderError as exc:
                raise HostCallError(exc.message) from exc

        return host_call

    def _remote_host_call(self, actor_id: str, namespace: str, binding: str,
                          operation: str, payload: bytes) -> bytes:
        """A host call to the provider holding the binding on another host (runs on the
        actor's worker thread; blocks it, not the event loop)."""
        if self.nc is None or self._loop is None:
            raise HostCallError(f"actor is not bound to {namespace}/{binding} here")
        timeout = self.limits.call_timeout_s
        headers = {rpc.OP_HEADER: operation}
        try:
            rpc.ensure_fits(self.nc, f"the payload of host call {namespace}/{binding} "
                            f"{operation}", payload, headers)
        except rpc.PayloadTooLarge as exc:
            raise HostCallError(exc.message) from None
        request = self.nc.request(
            rpc.provider_subject(self.subjects, actor_id, namespace, binding), payload,
            timeout=timeout, headers=headers)
        try:
            reply = asyncio.run_coroutine_threadsafe(request, self._loop).result(timeout + 1)
        except nats.errors.NoRespondersError:
            raise HostCallError(f"actor is not bound to {namespace}/{binding} on this "
                                "lattice") from None
        except Exception as exc:
            raise HostCallError(f"host call to {namespace}/{binding} on another host "
                                f"failed: {type(exc).__name__}") from None
        error = rpc.error_of(reply)
        if error is not None:
            raise HostCallError(error)
        return reply.data

    async def _on_provider_rpc(self, msg: Msg) -> None:
        actor_id, namespace, binding = msg.subject.split(".")[-3:]
        operation = (msg.headers or {}).get(rpc.OP_HEADER, "")
        provider = self.providers.get((namespace, binding))

        async def serve() -> bytes:
            if provider is None or (actor_id, namespace, binding) not in self.bindings:
                raise ProviderError(f"actor is not bound to {namespace}/{binding} here")
            return await asyncio.to_thread(provider.host_call, actor_id, operation, msg.data)

        await self._answer(msg, serve())

    @staticmethod
    async def _unsubscribe(sub: Subscription) -> None:
        try:
            await sub.unsubscribe()
        except Exception as exc:
            log.debug("unsubscribe %s failed: %r", sub.subject, exc)

    # ------------------------------------------------------------ providers

    async def start_provider(self, provider: ProviderInstance) -> None:
        cls = self.provider_classes.get((provider.capability_id, provider.vendor_id))
        if cls is None:
            known = ", ".join(f"{c}/{v}" for c, v in sorted(self.provider_classes))
            raise RuntimeFailure(f"no provider for capability {provider.capability_id} from "
                                 f"vendor {provider.vendor_id} on this host (known: {known})")
        ctx = ProviderContext(
            capability_id=provider.capability_id, binding_name=provider.binding_name,
            vendor_id=provider.vendor_id, nc=self.apps_nc, loop=asyncio.get_running_loop(),
            call_actor=self.call_actor,
        )
        try:
            instance: Provider = cls(ctx)
            await instance.start()
        except Exception as exc:
            raise RuntimeFailure(words(exc)) from exc
        self.providers[(provider.capability_id, provider.binding_name)] = instance

    async def stop_provider(self, provider: ProviderInstance) -> None:
        instance = self.providers.pop((provider.capability_id, provider.binding_name), None)
        if instance is not None:
            await instance.stop()

    def provider_state(self, provider: ProviderInstance) -> dict[str, str]:
        """What the inventory shows about a running provider."""
        instance = self.providers.get((provider.capability_id, provider.binding_name))
        if instance is None:
            return {}
        try:
            return dict(instance.state())
        except Exception:
            log.exception("provider %s/%s state failed", provider.capability_id,
                          provider.binding_name)
            return {}

    # ------------------------------------------------------------ bindings

    async def put_binding(self, binding: BindingInstance, resolved: Mapping[str, str]) -> None:
        claims = self.claims.get(binding.actor_id)
        if claims is None:
            _, claims = await self._verified(binding.actor_id)
        if binding.capability_id not in claims.capabilities:
            claimed = ", ".join(claims.capabilities) or "none"
            raise RuntimeFailure(f"actor {binding.actor_id} does not claim capability "
                                 f"{binding.capability_id} (it claims: {claimed})")
        provider = self.providers.get((binding.capability_id, binding.binding_name))
        if provider is None:
            raise RuntimeFailure(f"no provider for {binding.capability_id}/"
                                 f"{binding.binding_name} on this host")
        try:
            await provider.bind(binding.actor_id, resolved)
        except Exception as exc:
            raise RuntimeFailure(words(exc)) from exc
        key = binding_key(binding)
        self.bindings[key] = binding
        if self.nc is not None and key not in self._binding_subs:
            self._binding_subs[key] = await self.nc.subscribe(
                rpc.provider_subject(self.subjects, *key), queue=rpc.PROVIDER_QUEUE,
                cb=self._on_provider_rpc)
        log.info("actor %s bound to %s/%s (keys %s)", binding.actor_id, binding.capability_id,
                 binding.binding_name, sorted(resolved))

    async def delete_binding(self, binding: BindingInstance) -> None:
        self.bindings.pop(binding_key(binding), None)
        sub = self._binding_subs.pop(binding_key(binding), None)
        if sub is not None:
            await self._unsubscribe(sub)
        provider = self.providers.get((binding.capability_id, binding.binding_name))
        if provider is not None:
            await provider.unbind(binding.actor_id)
