"""docs/security.md is generated from lattice/auth/roles.py and must stay current."""

from __future__ import annotations

from pathlib import Path

from lattice.auth import roles, security_doc


def test_security_doc_is_current() -> None:
    current = security_doc.DOC_PATH.read_text()
    assert current == security_doc.render(current), (
        "docs/security.md is out of date: run `python -m lattice.auth.security_doc`")


def test_every_role_and_every_host_subject_is_in_the_table() -> None:
    doc = security_doc.table()
    for role in roles.ROLES:
        assert f"| {role} |" in doc
    grant = roles.host("LATTICEID", "HOSTID")
    for subject in (*grant.permissions.pub_allow, *grant.permissions.sub_allow):
        shown = subject.replace("LATTICEID", "{lattice}").replace("HOSTID", "{host_id}")
        assert f"`{shown}`" in doc, shown


def test_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "security.md"
    path.write_text(f"# prose\n{security_doc.BEGIN}\nstale\n{security_doc.END}\nmore prose\n")
    assert security_doc.main(["--check", str(path)]) == 1
    assert security_doc.main([str(path)]) == 0
    assert security_doc.main(["--check", str(path)]) == 0
    assert path.read_text().startswith("# prose\n") and path.read_text().endswith(
        "more prose\n")


def test_the_monitor_role_watches_two_advisory_subjects_and_publishes_nothing() -> None:
    grant = roles.grant("monitor", "LATTICEID", account="ACCOUNTKEY")
    assert grant.permissions.sub_allow == ("$SYS.ACCOUNT.ACCOUNTKEY.CONNECT",
                                           "$SYS.ACCOUNT.ACCOUNTKEY.DISCONNECT")
    assert grant.permissions.pub_deny == (">",) and not grant.permissions.pub_allow
    assert "| monitor | — | `>` | `$SYS.ACCOUNT.{account}.CONNECT`" in security_doc.table()
