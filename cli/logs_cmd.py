"""``latticectl logs [agent|HOST|SERVER...]``: the logs of the processes ``up`` started.

``latticectl up`` sends each process's stderr and stdout to ``<state-dir>/logs/<name>.log``
(``agent.log``, ``host-0.log``, ..., ``nats.log``) and records each path in ``state.json``;
this command reads them, as ``kubectl logs`` reads a pod's. A lattice ``up`` did not start
here (a context or ``--nats-url`` elsewhere) has its logs on the machines that run its
processes: the command says so. After ``down`` the files stay and are still read.

The core is pure: :func:`parse` turns lines into :class:`Record` s (a line that starts no
record -- a traceback's -- belongs to the one before), :class:`Filter` keeps the ones asked
for, :func:`render` prints one. Three line shapes are read: our text format
(:data:`lattice.logsetup.TEXT_FORMAT`), ``--log-format json`` (one object a line, with the
fields :data:`lattice.logsetup.FIELDS`) and nats-server's. The shell reads the files once,
merges them by time, and with ``-f`` polls them for new lines until every process followed
has exited (or Ctrl-C).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from cli.output import NotFound, warn
from cli.settings import Settings
from lattice.durations import Duration

#: ``--level`` names, lowest first, and their numbers (Python's)
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_NATS_LEVELS = {"TRC": 5, "DBG": 10, "INF": 20, "WRN": 30, "ERR": 40, "FTL": 50}
_LEVEL_NAMES = {v: k.upper() for k, v in LEVELS.items()} | {5: "TRACE"}
_TEXT = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "
                   r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+?): (.*)")
_NATS = re.compile(r"\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) \[([A-Z]{3})\] (.*)")
#: the context fields a JSON line may carry, in the order text shows them
FIELDS = ("entity", "host", "host_id", "revision", "trace")
#: the field filters (``--entity``, ...) and how many characters of a value a text line
#: names (the agent writes a revision's first 8, ids are cut to 12 at most)
FILTERED = {"entity": 12, "revision": 8, "trace": 12}
POLL = 0.25  #: seconds between two reads of the files with ``-f``
CHUNK = 1 << 20  #: bytes read from one file in one step of ``-f``
#: bytes of a file's end read first for ``--tail N``; four times more while too few
#: records are in it
TAIL_WINDOW = 64 << 10


@dataclass
class Record:
    """One log record: its first line parsed, continuation lines (a traceback) kept."""

    source: str
    lines: list[str]
    time: datetime | None = None
    level: int | None = None
    logger: str = ""
    message: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    structured: bool = False  #: from a ``--log-format json`` line
    #: lines that go on the record of an earlier read (``-f``: a traceback written late)
    continues: bool = False

    def document(self) -> dict[str, Any]:
        """The record for ``-o json``: a JSON line's own object, else the same keys made
        from the text; ``source`` names the process. Pure."""
        if self.structured:
            doc = dict(self.fields)
        else:
            doc = {"time": _time_text(self.lines[0]), "level": _level_name(self.level),
                   "logger": self.logger or None, "message": self.message}
        if len(self.lines) > 1:
            doc["message"] = "\n".join([str(doc.get("message", "")), *self.lines[1:]])
        return {**doc, "source": self.source}


def parse_line(source: str, line: str) -> Record | None:
    """The record ``line`` starts, or None when it continues the one before. Pure."""
    if line.startswith("{"):
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and "message" in doc:
            level = LEVELS.get(str(doc.get("level", "")).lower())
            return Record(source, [line], _parse_time(str(doc.get("time", ""))), level,
                          str(doc.get("logger", "")), str(doc["message"]), doc,
                          structured=True)
    if m := _TEXT.match(line):
        return Record(source, [line], _parse_time(m[1]), LEVELS[m[2].lower()], m[3], m[4])
    if m := _NATS.match(line):
        return Record(source, [line], _parse_time(m[1]), _NATS_LEVELS.get(m[2]),
                      "nats-server", m[3])
    return None


def parse(source: str, lines: Iterable[str], after: Record | None = None
          ) -> Iterator[Record]:
    """The records of ``lines`` (continuing ``after``, the last record read before).
    A line that starts nothing is added to the record before it; with no record before,
    it is one of its own, without time or level. A record without a time takes its
    predecessor's. Pure."""
    current = after
    for line in lines:
        started = parse_line(source, line)
        if started is None and current is not None and current is not after:
            current.lines.append(line)
            continue
        if started is None:  # a line of its own, or going on with ``after``
            started = Record(source, [line], message=line, continues=current is not None)
            if current is not None:
                started.time, started.level = current.time, current.level
                started.logger = current.logger
        elif started.time is None and current is not None:
            started.time = current.time
        if current is not None and current is not after:
            yield current
        current = started
    if current is not None and current is not after:
        yield current


@dataclass(frozen=True)
class Filter:
    """Which records are shown: a minimum level, a time, and context fields."""

    level: int | None = None
    since: datetime | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def __call__(self, rec: Record) -> bool:
        """Whether ``rec`` is shown. A record without a level (a process's own print) is
        shown at every level; a field asked for must be the JSON line's (an id or
        revision may be given in full or as a prefix) or, in a text line, be named in
        it. Pure."""
        if self.level is not None and rec.level is not None and rec.level < self.level:
            return False
        if self.since is not None and (rec.time is None or rec.time < self.since):
            return False
        return all(_has(rec, key, want) for key, want in self.fields)


def _has(rec: Record, key: str, want: str) -> bool:
    if rec.structured:
        value = rec.fields.get(key)
        if not isinstance(value, str) or not value:
            return False
        # a revision or an id in full or by a prefix; an entity also by a part of its
        # path (``echo`` finds ``Deployment/echo``, ``MAJEM2O2`` an action's actor)
        parts = value.split("/") if key == "entity" else [value]
        return value.startswith(want) or want.startswith(value) or any(
            p.startswith(want) for p in parts)
    text = "\n".join(rec.lines)
    return want in text or want[:FILTERED.get(key, len(want))] in text


def render(rec: Record, *, output: str, prefix: bool) -> str:
    """How ``rec`` is printed: its lines as written (a JSON line as our text line, its
    context fields after the message: a revision's first 12 characters, the host unless
    it is the line's process, no host id), or with ``-o json`` one object. Pure."""
    if output == "json":
        return json.dumps(rec.document())
    if rec.structured:
        doc = rec.fields
        extra = " ".join(f"{k}={_shown(k, doc[k])}" for k in FIELDS
                         if doc.get(k) not in (None, "") and k != "host_id"
                         and not (k == "host" and doc[k] == rec.source))
        first = (f"{doc.get('time', '')} {doc.get('level', '')} {rec.logger}: {rec.message}"
                 + (f"  [{extra}]" if extra else ""))
        more = str(doc["exc_info"]).splitlines() if doc.get("exc_info") else []
        lines = [first, *more, *rec.lines[1:]]
    else:
        lines = rec.lines
    return "\n".join(f"[{rec.source}] {line}" if prefix else line for line in lines)


def _shown(key: str, value: object) -> str:
    """A context field in a text line: a revision cut as latticectl prints shas. Pure."""
    return str(value)[:12] if key == "revision" else str(value)


def merged(per_source: Sequence[list[Record]]) -> Iterator[Record]:
    """The records of every source in time order (a source's own order kept). Pure."""
    low = datetime.min
    return heapq.merge(*per_source, key=lambda r: r.time or low)


def _parse_time(text: str) -> datetime | None:
    """``2026-12-02 12:41:28,970`` (ours) or ``2026/12/02 12:41:26.088179``
    (nats-server's), local time. Pure (and ~100 times faster than strptime)."""
    try:
        return datetime.fromisoformat(text.replace("/", "-", 2))
    except ValueError:
        return None


def _time_text(line: str) -> str | None:
    m = _TEXT.match(line) or _NATS.match(line)
    return m[1] if m else None


def _level_name(level: int | None) -> str | None:
    return _LEVEL_NAMES.get(level) if level is not None else None


# -- the shell: where the files are, reading and following them -----------------------


@dataclass
class Source:
    """One process's log file, and what ``-f`` has read of it."""

    name: str
    path: Path
    record: Any = None  #: its :class:`cli.localstack.ProcRecord` (None: process unknown)
    offset: int = 0
    last: Record | None = None


def sources(settings: Settings, names: Sequence[str]) -> list[Source]:
    """The log files of ``names`` (default: the agent and the hosts), from the state of a
    running ``up``, else from the files a stopped one left. Raises :class:`NotFound` when
    there are none or a name is unknown."""
    from cli.localstack import StackState

    state_dir = settings.state_dir
    state = StackState.load(state_dir)
    logs = state_dir / "logs"
    found: dict[str, Source] = {}
    servers: set[str] = set()
    if state is not None:
        if settings.nats_url and settings.nats_url != state.nats_url:
            warn(f"these are the logs of the lattice `up` started in {state_dir} "
                 f"({state.nats_url}), not of {settings.nats_url}")
        by_log = {s.get("log"): s.get("name") for s in state.servers}
        for rec in state.procs:
            if not rec.log:
                continue
            name = Path(rec.log).stem
            if rec.role == "nats-server":
                servers.add(name)
                alias = by_log.get(rec.log)
                if isinstance(alias, str):
                    found[alias] = Source(alias, Path(rec.log), rec)
            found.setdefault(name, Source(name, Path(rec.log), rec))
    elif logs.is_dir() and any(logs.glob("*.log")):
        warn(f"nothing is up in {state_dir}: showing the logs a stopped lattice left in {logs}")
        for path in sorted(logs.glob("*.log")):
            found[path.stem] = Source(path.stem, path)
            if path.stem.startswith("nats"):
                servers.add(path.stem)
    else:
        raise NotFound(_nothing_here(settings))
    if not names:
        return [s for n, s in sorted(found.items()) if n not in servers
                and (s.record is None or s.record.role != "nats-server")]
    chosen: list[Source] = []
    for name in names:
        if name == "nats" and "nats" not in found:
            picked = [found[n] for n in sorted(servers) if n in found]
        else:
            picked = [found[name]] if name in found else []
        if not picked:
            raise NotFound(f"no process {name!r} in the lattice of {state_dir} "
                           f"(known: {', '.join(sorted(found))})")
        chosen += [s for s in picked if s not in chosen]
    return chosen


def _nothing_here(settings: Settings) -> str:
    """Why there are no logs to read: nothing was started here, or the lattice is remote."""
    if settings.nats_url:
        return (f"no lattice started by `latticectl up` in {settings.state_dir}: the lattice "
                f"at {settings.nats_url} logs on the machines that run its agent and hosts "
                "(their stderr: a service's journal, a container's logs); `latticectl logs` "
                "reads only what `up` started (--state-dir)")
    return (f"nothing is up: no state and no logs in {settings.state_dir}; start a lattice "
            "with `latticectl up --detach` (or pass the --state-dir it used)")


def read_records(src: Source, keep: Filter, tail: int) -> tuple[list[Record], bool]:
    """The records of ``src``'s file that ``keep`` passes, the last ``tail`` of them (-1:
    all), and whether its last record is among them; remembers where ``-f`` goes on from.
    With a tail only the file's end is read: :data:`TAIL_WINDOW` bytes, more while they
    hold fewer records than asked for."""
    try:
        with src.path.open("rb") as f:
            size = f.seek(0, 2)
            window = size if tail < 0 else min(size, TAIL_WINDOW)
            while True:
                f.seek(size - window)
                data = f.read(window)
                complete = data[:data.rfind(b"\n") + 1]
                lines = complete.decode("utf-8", "replace").splitlines()
                whole = window >= size
                if not whole:  # the first line may be cut; lines before the first
                    lines = lines[1:]  # record's go with a record further back
                    while lines and parse_line(src.name, lines[0]) is None:
                        lines.pop(0)
                records = list(parse(src.name, lines))
                kept = [r for r in records if keep(r)]
                if whole or len(kept) >= tail:
                    break
                window = min(size, window * 4)
    except FileNotFoundError:
        warn(f"{src.name}: no log file at {src.path}")
        return [], False
    src.offset = size - window + len(complete)
    src.last = records[-1] if records else None
    last_shown = bool(kept) and kept[-1] is src.last
    return (kept[-tail:] if tail > 0 else [] if tail == 0 else kept), last_shown


def read_new(src: Source) -> list[Record]:
    """The records written to ``src``'s file since the last read (at most :data:`CHUNK`
    bytes; a file that shrank is read again from its start)."""
    try:
        with src.path.open("rb") as f:
            if f.seek(0, 2) < src.offset:
                src.offset, src.last = 0, None
            f.seek(src.offset)
            data = f.read(CHUNK)
    except FileNotFoundError:
        return []
    complete = data[:data.rfind(b"\n") + 1]
    src.offset += len(complete)
    records = list(parse(src.name, complete.decode("utf-8", "replace").splitlines(),
                         src.last))
    if records:
        src.last = records[-1]
    return records


def running(src: Source) -> bool:
    """Whether the process writing ``src`` still runs (and is still the one ``up``
    started)."""
    from cli.localstack import is_ours

    return src.record is not None and is_ours(src.record)


def follow(chosen: list[Source], keep: Filter, shown: dict[str, bool], output: str,
           prefix: bool) -> None:
    """Print new records until no process of ``chosen`` runs (read once more after) or
    Ctrl-C. ``shown`` says, per source, whether its last record was shown: a late
    continuation line goes with it."""
    try:
        while True:
            alive = [s for s in chosen if running(s)]
            for src in chosen:
                for rec in read_new(src):
                    show = shown.get(src.name, False) if rec.continues else keep(rec)
                    shown[src.name] = show
                    if show:
                        click.echo(render(rec, output=output, prefix=prefix))
            if not alive:
                return
            time.sleep(POLL)  # the poll interval of -f; every step ends or reads again
    except KeyboardInterrupt:
        return


@click.command("logs")
@click.argument("names", nargs=-1, metavar="[agent|HOST|SERVER|nats]...")
@click.option("-f", "--follow", "follow_", is_flag=True,
              help="Keep printing new lines until the processes exit or Ctrl-C.")
@click.option("--tail", type=click.IntRange(min=-1), default=-1, show_default=True,
              help="The last N records of each process (-1: all).")
@click.option("--since", type=Duration(), metavar="DURATION",
              help="Only records newer than this (30s, 5m, 2h).")
@click.option("--level", type=click.Choice(list(LEVELS), case_sensitive=False),
              help="Only records at this level or above.")
@click.option("--entity", metavar="ID", help="Only records about this entity.")
@click.option("--revision", metavar="SHA", help="Only records of this revision (a prefix "
              "will do).")
@click.option("--trace", metavar="ID", help="Only records of this trace.")
@click.option("--prefix/--no-prefix", default=None,
              help="Start each line with [process] (default: when several are shown).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one object a line, with a source field.")
@click.pass_obj
def logs_cmd(settings: Settings, names: tuple[str, ...], follow_: bool, tail: int,
             since: float | None, level: str | None, entity: str | None,
             revision: str | None, trace: str | None, prefix: bool | None,
             output: str) -> None:
    """Print the logs of the agent, hosts or servers that `latticectl up` started.

    With no name: the agent's and every host's, merged by time. `nats` names every
    nats-server. Lines written with `--log-format json` show as text unless -o json;
    --entity, --revision and --trace match their fields (in a text line: the value is
    named in it).

    \b
    Examples:
      latticectl logs                          # agent and hosts, merged
      latticectl logs agent -f                 # follow the agent until it exits or Ctrl-C
      latticectl logs host-0 --tail 20 --since 5m --level warning
      latticectl logs agent --revision 3f1c0e5a -o json | jq .message
    """
    chosen = sources(settings, names)
    fields = tuple((k, v) for k, v in (("entity", entity), ("revision", revision),
                                       ("trace", trace)) if v)
    keep = Filter(level=LEVELS[level.lower()] if level else None, fields=fields,
                  since=datetime.now() - timedelta(seconds=since) if since is not None
                  else None)
    prefixed = len(chosen) > 1 if prefix is None else prefix
    per_source: list[list[Record]] = []
    shown: dict[str, bool] = {}
    for src in chosen:
        records, shown[src.name] = read_records(src, keep, tail)
        per_source.append(records)
    for rec in merged(per_source):
        click.echo(render(rec, output=output, prefix=prefixed))
    if follow_:
        if not any(running(s) for s in chosen):
            warn("no process of these logs runs: nothing to follow")
        follow(chosen, keep, shown, output, prefixed)


COMMANDS: list[click.Command] = [logs_cmd]
