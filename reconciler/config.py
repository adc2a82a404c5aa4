"""The agent's configuration: one frozen record, filled by ``vinculum``'s command line.

Defaults are the documented ones (docs/agent.md); :mod:`reconciler.main` maps options and
environment variables onto it, tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitsync.verify import SignaturePolicy
from lattice.natsutil import NatsOptions
from reconciler.alerts import NO_ALERTS, AlertConfig
from reconciler.webhook import NO_WEBHOOK, WebhookConfig


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Everything the agent needs; defaults are the documented ones."""

    repo: str
    nats: NatsOptions
    data_dir: Path
    branch: str | None = None
    path: str = ""
    lattice: str = "default"
    interval: float = 30.0
    resync: float = 30.0
    bid_timeout: float = 0.25
    lease_ttl: float = 6.0
    holder: str | None = None
    #: sync only heads signed by a key this policy trusts (``--verify-commits``)
    verify_commits: SignaturePolicy | None = None
    #: system-account credentials that may read the lattice account's connect/disconnect
    #: advisories (``--monitor-creds``); None: heartbeats alone find a lost host
    monitor_creds: str | None = None
    #: replicas of the JetStream buckets the agent creates (the lease); the agent's
    #: connection carries it too (``NatsOptions.js_replicas``), which is what Lease reads
    js_replicas: int = 1
    #: how long a host whose connection closed has to reconnect before it counts as gone
    gone_grace: float = 0.25
    #: at most one rebalancing move per deployment per this many seconds
    #: (``--rebalance-interval``; the executor's ``rebalance_interval``)
    rebalance_interval: float = 10.0
    #: forges' push webhooks in, alerts out (``--webhook-addr``, ``--alert-url``)
    webhook: WebhookConfig = NO_WEBHOOK
    alerts: AlertConfig = NO_ALERTS
    #: serve Prometheus metrics, /healthz and /readyz here (``--metrics-addr``); None: off
    metrics_addr: tuple[str, int] | None = None
