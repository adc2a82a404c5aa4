"""Who may publish and subscribe to what: the allow-lists of each role of a lattice.

Pure data and functions, the one place the permissions of a secured lattice are written:
:mod:`lattice.auth.store` puts them into user JWTs (so the NATS server enforces them) and
:mod:`lattice.auth.security_doc` renders them as the table of docs/security.md.

The roles:

* **host**: its own commands (``ctl.host.<own id>.>``), the lattice's ping and auctions,
  answers to what it received (responses), events only under ``evt.<own id>.>``, the rpc
  subjects of actors and providers, and *reading* the registry (gantry) and the trust
  policy. It never sends commands, never touches the leader lease, never writes gantry.
* **agent**: sends pings, auctions and commands (``ctl.>``), reads events, takes the nudge
  (and answers one sent as a request: ``latticectl reconcile``), holds the leader lease
  (its own key-value bucket).
* **apps**: the application traffic of the ``wascc:messaging`` provider: any subject
  outside the lattice's own namespaces, on a connection of its own, so an actor's
  ``Publish`` can reach no control subject.
* **admin** (latticectl): everything inside its lattice's account.
* **leaf**: the link of a leaf-node site (``latticectl up --leaf-of``): the same
  subjects both ways, so it does not matter which side of the link a permission is read
  from. Everything of the account crosses (the lattice's subjects, application subjects,
  inboxes, the hub's JetStream API in its domain form, which is how the site's hosts read
  the registry and the policy) except the system account's subjects, the plain
  JetStream API, the key-value and object-store write subjects, the JetStream internals,
  and the domain-form calls that create, change or delete streams and durable
  consumers: a site runs hosts, it does not administer the hub.
* **monitor**: a user of the *system* account, not the lattice's (signed by the system
  account key, :meth:`lattice.auth.store.AuthStore.issue_monitor`): it may subscribe to
  the server's connect and disconnect advisories of the lattice's account
  (``$SYS.ACCOUNT.<account>.CONNECT`` / ``.DISCONNECT``) and nothing else, and publish
  nothing. The agent's advisory watcher (:mod:`lattice.advisories`) uses it to see a
  host's connection close within milliseconds.
* **leaf-system**: the *system-account* link of a leaf-node site, a second remote beside
  the ``leaf`` one, also a user of the system account. On a leafnode connection the
  server reads a user's permissions from the leaf's side: *publish* is what the site may
  send into the hub, *subscribe* is what the hub may send to the site (measured on
  nats-server 2.15: the other way round, nothing crosses). The site may send only the
  connect and disconnect advisories of the lattice's account (so the agent's monitor on
  the hub sees a site host's connection close); the hub may send only account JWT updates
  (``$SYS.REQ.CLAIMS.UPDATE`` and ``$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE``, so a revocation
  pushed on the hub cuts a site host off). A site can push no account JWT into the hub,
  read no other account's advisories, and answer no system request.

Every role but admin has an inbox prefix of its own (``_INBOX.<host id>``,
``_INBOX.agent``, ``_INBOX_apps``), so no role reads the replies meant for another; the
prefix is written into the user JWT as the tag ``vinculum-inbox:<prefix>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lattice import gantry, policy
from lattice.auth.keys import Permissions
from lattice.protocol import Subjects

RoleName = Literal["host", "agent", "admin", "apps", "monitor", "leaf", "leaf-system"]
ROLES: tuple[RoleName, ...] = ("host", "agent", "apps", "admin", "leaf", "monitor",
                               "leaf-system")
#: Roles whose users belong to the system account (signed by its key), not the lattice's.
SYSTEM_ROLES: tuple[RoleName, ...] = ("monitor", "leaf-system")
#: Where the servers take account JWT updates (the plain form, and per account).
CLAIMS_UPDATE_SUBJECTS = ("$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE")
#: Namespaces no application subject may use.
RESERVED = ("lattice.>", "$JS.>", "$KV.>", "$O.>", "$SYS.>", "_INBOX.>", "$JSC.>", "$NRG.>")


def inbox_prefix(role: RoleName, host_id: str = "") -> str:
    """The inbox prefix a client of ``role`` must use (nats-py ``inbox_prefix``)."""
    if role == "host":
        return f"_INBOX.{host_id}"
    if role == "admin":
        return "_INBOX"
    if role == "apps":  # outside _INBOX.>, which apps may not touch
        return "_INBOX_apps"
    if role == "monitor":  # in the system account; it may publish nothing, so no requests
        return "_INBOX_monitor"
    if role == "leaf-system":  # a server's link: it makes no requests of its own
        return "_INBOX_leaf_system"
    return f"_INBOX.{role}"


#: The JetStream API, plain and in a domain (``$JS.<domain>.API``: the form a client of a
#: leaf node must use to reach the hub's JetStream, and which works on the hub too).
_APIS = ("$JS.API", "$JS.*.API")


def _api(*suffixes: str) -> tuple[str, ...]:
    """``suffixes`` under both forms of the JetStream API. Pure."""
    return tuple(f"{api}.{suffix}" for suffix in suffixes for api in _APIS)


def _stream_read(stream: str) -> tuple[str, ...]:
    """JetStream API subjects that read one stream (info, get, ordered consumers)."""
    return _api(f"STREAM.INFO.{stream}", f"STREAM.MSG.GET.{stream}",
                f"DIRECT.GET.{stream}", f"DIRECT.GET.{stream}.>",
                f"CONSUMER.CREATE.{stream}", f"CONSUMER.CREATE.{stream}.>",
                f"CONSUMER.INFO.{stream}.>", f"CONSUMER.DELETE.{stream}.>",
                f"CONSUMER.MSG.NEXT.{stream}.>")


def _stream_own(stream: str) -> tuple[str, ...]:
    """Reading, creating and updating one stream."""
    return (*_stream_read(stream), *_api(f"STREAM.CREATE.{stream}",
                                         f"STREAM.UPDATE.{stream}"))


@dataclass(frozen=True)
class Grant:
    """One row of the table: a role's permissions with why each entry is there."""

    role: RoleName
    permissions: Permissions
    inbox: str


def host(lattice_id: str, host_id: str) -> Grant:
    """A host's grant, its own id in every subject that names a host."""
    s = Subjects(lattice_id)
    gantry_stream = f"OBJ_{gantry.bucket_name(lattice_id)}"
    policy_bucket = policy.bucket_name(lattice_id)
    inbox = inbox_prefix("host", host_id)
    return Grant("host", Permissions(
        sub_allow=(s.ping, f"{s.prefix}.ctl.auction.*", s.host_commands(host_id),
                   f"{s.prefix}.rpc.>", f"{inbox}.>"),
        pub_allow=(f"{s.prefix}.evt.{host_id}.>", f"{s.prefix}.rpc.>", f"{inbox}.>",
                   *_api("INFO", "STREAM.NAMES"),
                   *_stream_read(gantry_stream), *_stream_read(f"KV_{policy_bucket}")),
        responses=1,
    ), inbox)


def agent(lattice_id: str) -> Grant:
    """The agent's grant: commands out, events in, its lease bucket."""
    s = Subjects(lattice_id)
    lease = s.lease_bucket
    inbox = inbox_prefix("agent")
    return Grant("agent", Permissions(
        sub_allow=(s.events, s.nudge, f"{inbox}.>"),
        pub_allow=(f"{s.prefix}.ctl.>", f"{inbox}.>", *_api("INFO", "STREAM.NAMES"),
                   *_stream_own(f"KV_{lease}"), f"$KV.{lease}.>"),
        responses=1,  # the answer to a nudge sent as a request
    ), inbox)


def apps(lattice_id: str) -> Grant:
    """Application subjects only: anything outside the reserved namespaces."""
    inbox = inbox_prefix("apps")
    return Grant("apps", Permissions(
        pub_allow=(">",), pub_deny=RESERVED,
        sub_allow=(">",), sub_deny=RESERVED,
        responses=1,
    ), inbox)


def admin(lattice_id: str) -> Grant:
    """latticectl: everything in the lattice's account (an empty allow-list is all)."""
    return Grant("admin", Permissions(), inbox_prefix("admin"))


#: What a leaf site's link may not carry, either way (see :func:`leaf`).
LEAF_DENY = ("$SYS.>", "$JS.API.>", "$KV.>", "$O.>", "$JSC.>", "$NRG.>",
             *(f"$JS.*.API.{op}.>" for op in (
                 "STREAM.CREATE", "STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE",
                 "STREAM.MSG.DELETE", "STREAM.RESTORE", "CONSUMER.DURABLE", "ACCOUNT",
                 "META", "SERVER")))


def leaf(lattice_id: str) -> Grant:
    """The link of a leaf-node site: everything of the account but :data:`LEAF_DENY`,
    the same subjects in both directions."""
    return Grant("leaf", Permissions(
        pub_allow=(">",), pub_deny=LEAF_DENY, sub_allow=(">",), sub_deny=LEAF_DENY,
    ), inbox_prefix("admin"))


def advisory_subjects(account_public_key: str) -> tuple[str, str]:
    """The server's connect and disconnect advisory subjects of one account. Pure."""
    return (f"$SYS.ACCOUNT.{account_public_key}.CONNECT",
            f"$SYS.ACCOUNT.{account_public_key}.DISCONNECT")


def monitor(account_public_key: str) -> Grant:
    """A system-account user that may only watch the lattice account's connects and
    disconnects: subscribe to those two subjects, publish nothing (the deny ``>``; an
    empty allow-list would mean everything)."""
    return Grant("monitor", Permissions(
        sub_allow=advisory_subjects(account_public_key),
        pub_deny=(">",),
    ), inbox_prefix("monitor"))


def leaf_system(account_public_key: str) -> Grant:
    """The system-account link of a leaf site: advisories of the lattice's account out of
    the site (publish), account JWT updates into it (subscribe); nothing else either way.
    Pure."""
    return Grant("leaf-system", Permissions(
        pub_allow=advisory_subjects(account_public_key),
        sub_allow=CLAIMS_UPDATE_SUBJECTS,
    ), inbox_prefix("leaf-system"))


def grant(role: RoleName, lattice_id: str, host_id: str = "", *,
          account: str = "") -> Grant:
    """The grant of ``role`` (``host_id`` for a host, the lattice account's public key
    ``account`` for a monitor and a leaf's system link)."""
    if role == "host":
        if not host_id:
            raise ValueError("a host's grant needs its host id")
        return host(lattice_id, host_id)
    if role == "monitor":
        if not account:
            raise ValueError("a monitor's grant needs the lattice account's public key")
        return monitor(account)
    if role == "leaf-system":
        if not account:
            raise ValueError("a leaf system link's grant needs the lattice account's key")
        return leaf_system(account)
    return {"agent": agent, "apps": apps, "admin": admin, "leaf": leaf}[role](lattice_id)
