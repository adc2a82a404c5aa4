"""A host's status file is rendered from its clock-free rendering plus its ``last_seen``
line (issue 15: 10,000 host files per report); the bytes are those of rendering the whole
model, whatever the labels hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gitsync import statusformat as sf
from lattice.status import HostStatus, Phase, StatusReport, SyncSummary

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def plain(host: HostStatus) -> bytes:
    sf._YAML_CACHE.clear()
    data = host.model_dump(mode="json")
    return sf.yaml.dump(data, Dumper=sf._Dumper, sort_keys=False, default_flow_style=False,
                        allow_unicode=True).encode()


@pytest.mark.parametrize("labels", [
    {}, {"zone": "a"}, {"last_seen": "null"}, {"x": "\nlast_seen: null\n"}, {"ü": "ß"},
])
@pytest.mark.parametrize("seen", [None, T0, T0 + timedelta(days=400, microseconds=1)])
def test_host_file_is_the_model_rendered(labels: dict[str, str], seen: datetime | None) -> None:
    host = HostStatus(host_id="NHOST", name="h1", labels=labels, started_at=T0,
                      last_seen=seen, actors=2)
    want = plain(host)
    assert sf.host_yaml(host) == want
    assert sf.host_yaml(host) == want  # from the memo
    assert sf.to_yaml(host) == want


def test_report_files_use_it() -> None:
    hosts = {f"N{i}": HostStatus(host_id=f"N{i}", name=f"h{i}", last_seen=T0 + timedelta(i))
             for i in range(3)}
    report = StatusReport(summary=SyncSummary(branch="main", phase=Phase.SYNCED),
                          hosts=hosts)
    files = sf.report_files(report)
    for i, h in enumerate(hosts.values()):
        assert files[f"hosts/N{i}.yaml"] == plain(h)
