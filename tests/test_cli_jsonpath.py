"""Pure: kubectl's JSONPath templates and paths (cli.jsonpath), label selectors
(cli.selector) and list rendering (cli.listing) over plain documents."""

from __future__ import annotations

import pytest

from cli.jsonpath import TemplateError, parse_path, parse_template, to_jsonpath
from cli.listing import Resource, Section, parse_columns, render_sections, sort_items
from cli.selector import parse_selector
from lattice.errors import SelectorError

DOC = {"kind": "List", "items": [
    {"metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "x", "my-key": "y"}},
     "status": {"phase": "Synced", "actors": {"ready": 10}}},
    {"metadata": {"name": "api"}, "status": {"phase": "Degraded", "actors": {"ready": 9}}},
]}


@pytest.mark.parametrize(("template", "text"), [
    ("{.items[*].metadata.name}", "web api"),
    ("{.items[0].metadata.name}", "web"),
    ("{.items[-1:].metadata.name}", "api"),
    ("{.kind}", "List"),
    (".kind", "List"),  # no braces: one path, as kubectl
    ("{$.kind} {@.kind}", "List List"),
    ("{..name}", "web api"),
    ("{.items[0].metadata.labels.app\\.kubernetes\\.io/name}", "x"),
    ("{.items[0].metadata.labels.my-key}", "y"),
    ("{.items[0].metadata.labels['my-key']}", "y"),
    ('{.items[?(@.status.phase=="Degraded")].metadata.name}', "api"),
    ("{.items[0].status.actors}", '{"ready":10}'),
    ("{.items[*].status.actors.ready}", "10 9"),
    ("{.missing}-", "-"),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}',
     "web\tSynced\napi\tDegraded\n"),
    ('{range .items[*]}[{range .metadata.labels.*}{@}{end}]{end}', "[xy][]"),
    ('{"a\\"b\\\\"}', 'a"b\\'),
    ("names: {.items[*].metadata.name}.", "names: web api."),
])
def test_templates(template: str, text: str) -> None:
    assert parse_template(template).render(DOC) == text


@pytest.mark.parametrize(("template", "why"), [
    ("{.items[0}", "never closed"),
    ("{range .items[*]}x", "{range} without {end}"),
    ("{end}", "{end} without {range}"),
    ('{"x}', "never closed"),
    ("{..}", "wants a name"),
    ("{.a..}", "wants a name"),
    ("{.a.}", "an empty key"),
    ("{}", "an empty path"),
])
def test_bad_templates(template: str, why: str) -> None:
    with pytest.raises(TemplateError, match=why.replace("{", r"\{").replace("}", r"\}")
                       .replace("[", r"\[")):
        parse_template(template)


def test_paths_become_quoted_keys() -> None:
    assert to_jsonpath(".metadata.labels.a\\.b/c") == "$['metadata']['labels']['a.b/c']"
    assert to_jsonpath(".items[*].x") == "$['items'][*]['x']"
    assert to_jsonpath("..name") == "$..['name']"
    assert to_jsonpath("$") == "$"
    assert parse_path("{.status.phase}").find({"status": {"phase": "Synced"}}) == ["Synced"]


def test_selectors() -> None:
    q = parse_selector("app=web, tier in (edge, core),!gpu,zone notin (x)")
    assert str(q) == "app=web,tier in (core,edge),!gpu,zone notin (x)"
    assert q.matches({"app": "web", "tier": "core"})
    assert not q.matches({"app": "web", "tier": "other"})
    assert not q.matches({"app": "web", "tier": "edge", "gpu": "1"})
    assert not q.matches({"app": "web", "tier": "edge", "zone": "x"})
    assert parse_selector("a!=b").matches({}) and parse_selector("a==b").matches({"a": "b"})
    for bad in ("a=b,", "a in ()", "a in b", "=x", "a=b=c", "!a=b"):
        with pytest.raises(SelectorError):
            parse_selector(bad)


def res(kind: str, name: str, ready: object) -> Resource:
    doc = {"metadata": {"name": name}, "status": {"ready": ready}}
    return Resource(kind, name, doc, [name, ready])


def test_sort_numbers_by_value_and_missing_last() -> None:
    items = [res("d", "a", 10), res("d", "b", 9), res("d", "c", None), res("d", "e", 100)]
    items.append(Resource("d", "f", {"metadata": {"name": "f"}}, ["f", "-"]))
    got = [r.name for r in sort_items(items, ".status.ready")]
    assert got == ["b", "a", "e", "c", "f"]  # 9 < 10 < 100, null as JSON, missing last
    assert [r.name for r in sort_items(items, None)] == ["a", "b", "c", "e", "f"]


def test_render_sections() -> None:
    deps = Section("deployment", ("NAME", "READY"), [res("deployment", "web", 1)])
    hosts = Section("host", ("NAME", "READY"), [res("host", "pi", 0)])
    both = render_sections([deps, hosts], None, prefix=True)
    assert both == "NAME             READY\ndeployment/web   1\n\nNAME      READY\nhost/pi   0\n"
    assert render_sections([deps], None, no_headers=True) == "web   1\n"
    assert render_sections([deps, hosts], "name") == "deployment/web\nhost/pi\n"
    assert render_sections([deps], "jsonpath={.metadata.name}", single=True) == "web"
    assert render_sections([deps], "jsonpath={.items[0].metadata.name}") == "web"
    assert render_sections([deps, hosts], "custom-columns=N:.metadata.name,R:.status.ready") \
        == "N     R\nweb   1\npi    0\n"
    assert render_sections([Section("d", ("NAME",), [])], None) == ""


def test_custom_columns_keep_commas_inside_brackets() -> None:
    cols = parse_columns("A:.x[?(@.k=='a,b')].v,B:{.y}")
    assert [h for h, _ in cols.columns] == ["A", "B"]
    assert cols.columns[0][1].find({"x": [{"k": "a,b", "v": 1}]}) == [1]
