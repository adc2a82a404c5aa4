"""A lattice host: joins a lattice empty, with labels, and obeys the control protocol.

``lattice-host`` (:mod:`hostagent.main`) connects to NATS and runs one :class:`Host`
(:mod:`hostagent.host`): it announces itself, heartbeats its inventory, answers pings and
auctions, and obeys commands to start and stop actors and providers and to put and delete
bindings, acking each and publishing the matching event. What a command does is decided in
:mod:`hostagent.commands` against the bookkeeping in :mod:`hostagent.state`; the work itself
goes through the :class:`~hostagent.workload.Runtime` interface, whose only implementation in
this version records entities without executing WebAssembly. This package imports only
:mod:`lattice`; the reconciler speaks to it over the wire protocol alone.
"""
