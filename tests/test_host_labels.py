"""Pure parts of the host: labels from flags and environment, binding value templates,
the auction decision and the inventory."""

from __future__ import annotations

import platform
import sys

import pytest

from hostagent.labels import LabelError, env_labels, host_labels, parse_label
from hostagent.state import HostState, auction_reply
from hostagent.values import Resolved, UnresolvedError, redact, resolve, variables
from lattice.protocol import AuctionRequest, ProviderInstance, utcnow


def test_labels_merge_builtins_env_and_flags() -> None:
    labels = host_labels(["leds=12", "zone=b"], {"LATTICE_LABEL_ZONE": "a",
                                                 "LATTICE_LABEL_GPU_KIND": "none",
                                                 "LATTICE_LABEL_": "ignored", "HOME": "/"})
    assert labels == {
        "hostcore.os": sys.platform, "hostcore.arch": platform.machine().lower(),
        "hostcore.python": platform.python_version(),
        "leds": "12", "zone": "b", "gpu_kind": "none",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [("leds", "expected key=value"), ("=12", "invalid label key"),
     ("le ds=1", "invalid label key"), ("leds=a b", "invalid value"),
     ("-x=1", "invalid label key")],
)
def test_bad_labels_are_named(text: str, problem: str) -> None:
    with pytest.raises(LabelError, match=problem):
        parse_label(text)


def test_builtins_cannot_be_overridden() -> None:
    with pytest.raises(LabelError, match="is built in"):
        host_labels(["hostcore.os=plan9"], {})
    with pytest.raises(LabelError, match="is built in"):
        host_labels([], {"LATTICE_LABEL_HOSTCORE.ARCH": "z80"})
    with pytest.raises(LabelError, match="invalid value"):
        env_labels({"LATTICE_LABEL_X": "a b"})


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [("${A}", {"A": "1"}, "1"), ("${A:dflt}", {}, "dflt"), ("${A:}", {}, ""),
     ("${A:dflt}", {"A": ""}, ""), ("x-${A}-${B:2}-y", {"A": "1"}, "x-1-2-y"),
     ("$${A}", {"A": "1"}, "${A}"), ("plain $A {A}", {"A": "1"}, "plain $A {A}"),
     ("${A:nats://h:4222}", {}, "nats://h:4222")],
)
def test_templates_resolve(template: str, env: dict[str, str], expected: str) -> None:
    assert resolve({"k": template}, env).values == {"k": expected}


def test_unset_variables_are_named_and_secrets_tracked() -> None:
    with pytest.raises(UnresolvedError, match="variables B, C") as err:
        resolve({"a": "${B}", "b": "${C}${B}", "c": "${D:ok}"}, {})
    assert err.value.names == ["B", "C"]
    resolved = resolve({"a": "${S}", "b": "${T:t}"}, {"S": "hunter2"})
    assert resolved.secrets == frozenset({"hunter2"})
    assert "hunter2" not in repr(resolved) and isinstance(resolved, Resolved)
    assert redact("failed with hunter2 and hunter2x", resolved.secrets) == (
        "failed with *** and ***x"
    )
    assert variables("${A}$${B}${C:x}") == ["A", "C"]


def state_with_provider() -> HostState:
    state = HostState(host_id="NH", name="h", labels={"leds": "12"})
    state.providers[("a:b", "default")] = ProviderInstance(
        capability_id="a:b", vendor_id="v", instance_id="i", started_at=utcnow()
    )
    return state


@pytest.mark.parametrize(
    ("request_", "kind", "reason"),
    [
        (AuctionRequest(kind="actor", actor_id="M", constraints=["leds=12"]), "actor", ""),
        (AuctionRequest(kind="actor", actor_id="M", constraints=["gpu"]), "actor",
         "label gpu missing"),
        (AuctionRequest(kind="actor", constraints=[]), "actor", "actor auction without actor_id"),
        (AuctionRequest(kind="provider"), "provider", "provider auction without capability_id"),
        (AuctionRequest(kind="provider", capability_id="a:b"), "provider",
         "already runs provider a:b/default"),
        (AuctionRequest(kind="provider", capability_id="a:b", binding_name="x"), "provider", ""),
        (AuctionRequest(kind="actor", actor_id="M"), "provider",
         "auction of kind actor sent to the provider auction subject"),
        (AuctionRequest(kind="actor", actor_id="M", constraints=["a==b=c"]), "actor",
         "invalid constraint 'a==b=c'"),
    ],
)
def test_auction_decision(request_: AuctionRequest, kind: str, reason: str) -> None:
    reply = auction_reply(request_, kind, state_with_provider())
    assert reply.bid == (not reason) and reply.reason.startswith(reason)
    assert reply.load == 1 and reply.auction_id == request_.auction_id


def test_inventory_is_sorted_and_timed() -> None:
    state = state_with_provider()
    inv = state.inventory()
    assert inv.host_id == "NH" and inv.uptime_s >= 0 and len(inv.providers) == 1
