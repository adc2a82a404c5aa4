"""gitsync.yamlfast writes exactly PyYAML's bytes, or declines (None): a property over
generated documents with awkward strings, and real status documents (which it must not
decline, or the status writer gains nothing)."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitsync import statusformat
from gitsync.yamlfast import dump
from lattice.protocol import utcnow
from lattice.status import Condition, Count, DeploymentStatus, HostStatus, Phase, Placement

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def pyyaml(data: Any) -> bytes:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True).encode()


# strings that look like other types, carry YAML indicators, quotes, spaces, unicode
tricky = st.one_of(
    st.text(alphabet="ab01:#-' \"é.,/=~<>?!&*[]{}|%@`\t", max_size=12),
    st.sampled_from(["yes", "No", "null", "~", "", "1.5", "0x1F", "1:30", "2026-12-02",
                     "2026-12-02T17:13:10.596000Z", "<<", "=", "- x", "a: b", "#c",
                     "x " * 45, "word " * 30, "é", ".inf", "-1", "+1", "0o7"]),
)
# long ones, folded at the width: words of varied length, single and double spaces, quotes
words = st.lists(st.text(alphabet="abcxyz0123:'-#", min_size=1, max_size=14),
                 min_size=2, max_size=18)
folded = st.builds(
    lambda ws, gaps: "".join(w + " " * g for w, g in zip(ws, gaps, strict=False)).strip(),
    words, st.lists(st.sampled_from([1, 1, 1, 2]), min_size=18, max_size=18))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), tricky, folded)
docs = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(tricky, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(tricky, docs, min_size=1, max_size=5))
@example({"0000": "' 000' 0000' 000000 000000' 0000000000' 000000000'' 0000000000000 0"})
@example({"m": "x " * 50, "k": [{"message": "word " * 30}]})
def test_the_bytes_are_pyyamls_or_none(data: dict[str, Any]) -> None:
    out = dump(data)
    assert out is None or out == pyyaml(data), (out, pyyaml(data))


def test_status_documents_take_the_fast_path_and_match() -> None:
    now = utcnow()
    dep = DeploymentStatus(
        name="app-00001", labels={"team": "edge", "vinculum.io/tier": "1"}, revision="a" * 40,
        phase=Phase.DEGRADED, spec={"actors": [{"id": "M" * 56, "replicas": 2,
                                                "affinity_rules": ["zone=a", "!gpu"]}]},
        actors=Count(ready=1, desired=2), providers=Count(),
        placements=[Placement(entity="M" * 56, kind="actor", host_id="N" * 56,
                              host_name="pi-4", since=now, message="replica 0"),
                    Placement(entity="M" * 56, kind="actor",
                              message="replica 1: no host satisfies zone=a: the host's "
                                      "label zone=b, wants a")],
        conditions=[Condition(type="Ready", status=False, reason="Unplaceable",
                              message="1/2 actors, 0/0 providers ready; it's unplaced",
                              last_transition=now)],
        created=now)
    host = HostStatus(host_id="N" * 56, name="pi-4", labels={"zone": "b"}, started_at=now,
                      last_seen=now, actors=1, providers=0, bindings=0)
    for model in (dep, host):
        data = model.model_dump(mode="json")
        out = dump(data)
        assert out is not None, data
        assert out == pyyaml(data)
        assert statusformat.to_yaml(model) == out
