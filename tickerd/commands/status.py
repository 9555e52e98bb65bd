"""``tickerd status``: the daemon's health, read from its records in Redis.

It reads what the daemon wrote (:mod:`tickerd.monitor`), so it works from any machine that
reaches the Redis, and a daemon that died shows as down once its heartbeat is old or gone.
Exit status: 0 healthy, 1 degraded, 2 down or not running (and 2 for a bad configuration).

In fleet mode (``[fleet] name``) it shows the fleet (:class:`FleetReport`): every live member
with the age of its lease and what it collects, each judged by its own records as a single
daemon is, and the subscriptions owned by nobody (degraded) or by more than ``replicas``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Container, Mapping
from datetime import datetime
from typing import Any

import attrs
import orjson

from tickerd import embedded, topology
from tickerd.commands import EXIT_CONFIG, add_config_option, load_or_report
from tickerd.config import Config
from tickerd.fleet import Member, read_members
from tickerd.fleet.view import FleetView, survey
from tickerd.health import DEGRADED, DOWN, HEALTHY, LEVELS, assess
from tickerd.layout import RedisLayout
from tickerd.redact import redact
from tickerd.redis_errors import refusal
from tickerd.snapshots import (
    DatabaseSourceSnapshot,
    ExchangeRecord,
    ExchangeSnapshot,
    Heartbeat,
    UnreadableRecord,
    converter,
)

#: A heartbeat older than this many health intervals means the daemon is not working.
HEARTBEAT_INTERVALS = 2


@attrs.frozen
class Report:
    """What ``status`` (and the status line of ``watch``) knows at one moment."""

    level: int
    reasons: list[str]
    url: str
    prefix: str
    heartbeat: Heartbeat | None
    exchanges: dict[str, ExchangeRecord]
    checked: float

    @property
    def heartbeat_age(self) -> float | None:
        return None if self.heartbeat is None else max(0.0, self.checked - self.heartbeat.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": LEVELS[self.level],
            "exit_status": self.level,
            "reasons": self.reasons,
            "redis": self.url,
            "prefix": self.prefix,
            "heartbeat_age": self.heartbeat_age,
            "heartbeat": converter.unstructure(self.heartbeat),
            "exchanges": converter.unstructure(self.exchanges, dict[str, ExchangeRecord]),
        }


def unreachable(error: BaseException, url: str) -> str:
    """Why Redis at ``url`` gave no records: it refuses tickerd, or it is not reachable."""
    reason = refusal(error, url)
    if reason is not None:  # there, but refuses: the daemon cannot write either
        return f"Redis at {redact(url)} refuses tickerd: {redact(reason)}"
    return f"Redis at {redact(url)} is not reachable: {error}"


def read_report(client: topology.Client, url: str, prefix: str, *, instance: str | None = None) -> Report:
    """Read the records and judge them (blocking: redis-py); ``url`` is shown redacted.
    ``instance``: the records of that fleet member."""
    now = time.time()
    url = redact(url)

    def report(
        level: int,
        reasons: list[str],
        heartbeat: Heartbeat | None = None,
        exchanges: dict[str, ExchangeRecord] | None = None,
    ) -> Report:
        return Report(level, reasons, url, prefix, heartbeat, exchanges or {}, now)

    try:
        heartbeat, exchanges = RedisLayout(prefix, instance=instance).read_health(client)
    except (*topology.ERRORS, OSError) as exc:
        return report(DOWN, [unreachable(exc, url)])
    except UnreadableRecord as exc:
        return report(DOWN, [f"cannot read tickerd's records (another version, or not tickerd's): {exc}"])
    if heartbeat is None:
        where = f"{url} (prefix {prefix!r})" if prefix else url
        return report(DOWN, [f"tickerd is not running: no heartbeat in Redis at {where}"])
    if heartbeat.state != "running":
        when = _clock(heartbeat.time)
        return report(DOWN, [f"tickerd stopped at {when}"], heartbeat, exchanges)
    age = now - heartbeat.time
    if age > HEARTBEAT_INTERVALS * heartbeat.interval:
        return report(DOWN, [f"heartbeat is {_age(age)} old: tickerd is hung or gone"], heartbeat, exchanges)
    level, reasons = assess(exchanges, heartbeat.source, heartbeat.fleet_store)
    missing = sorted(set(heartbeat.exchanges) - set(exchanges))
    if missing:
        reasons += [f"{name}: no health record" for name in missing]
        level = max(level, DEGRADED)
    return report(level, reasons, heartbeat, exchanges)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _counts(record: ExchangeSnapshot) -> tuple[int, int, int, int, int]:
    """(subscribed, fresh, waiting, stale, rejected) symbols of one exchange record: fresh is
    what had a ticker within ``stale_after``, waiting what never had one (yet)."""
    symbols, waiting, stale, rejected = record.symbols, record.waiting, record.stale, record.rejected
    fresh = len(symbols) - len(waiting) - len(stale) - len(rejected)
    return len(symbols), fresh, len(waiting), len(stale), len(rejected)


def summary_line(report: Report) -> str:
    """One line for a live view: the level, each exchange, the heartbeat's age."""
    parts = [LEVELS[report.level].upper()]
    for name, record in sorted(report.exchanges.items()):
        total, fresh, waiting, _, _ = _counts(record)
        line = f"{name} {record.state} {fresh}/{total} fresh"
        parts.append(line + (f", {waiting} waiting" if waiting else ""))
    if report.heartbeat_age is not None:
        parts.append(f"heartbeat {_age(report.heartbeat_age)} ago")
    if report.level == DOWN:
        parts.extend(report.reasons)
    return " · ".join(parts)


def exchange_table(exchanges: Mapping[str, ExchangeSnapshot]) -> list[tuple[str, ...]]:
    """A heading, then one row per exchange: its state, connections, symbol counts, reconnects
    and last error (``status`` prints it, the status page shows it)."""
    rows: list[tuple[str, ...]] = [
        (
            "EXCHANGE",
            "STATE",
            "CONNS",
            "SYMBOLS",
            "FRESH",
            "WAITING",
            "STALE",
            "REJECTED",
            "RECONNECTS",
            "LAST ERROR",
        )
    ]
    for name, record in sorted(exchanges.items()):
        error, when = record.last_error, record.last_error_ts
        rows.append(
            (
                name,
                record.state,
                str(record.connections),
                *map(str, _counts(record)),
                str(record.reconnects),
                f"{_clock(when)} {error}" if error and when else "-",
            )
        )
    return rows


def symbol_problems(exchanges: Mapping[str, ExchangeSnapshot], now: float) -> list[tuple[str, str]]:
    """``(stale|rejected, what)`` for every stale and every refused symbol, with since when or
    the exchange's reason."""
    found = []
    for name, record in sorted(exchanges.items()):
        for symbol in record.stale:
            tick = record.last_tick.get(symbol)
            since = f"last tick {_age(now - tick)} ago" if tick else "no tick yet"
            found.append(("stale", f"{name} {symbol} ({since})"))
        for symbol, reason in sorted(record.rejected.items()):
            found.append(("rejected", f"{name} {symbol}: {reason}"))
    return found


def render(report: Report) -> str:
    """The table ``tickerd status`` prints."""
    lines: list[str] = []
    heartbeat = report.heartbeat
    if heartbeat is not None:
        # Up until now while it runs (the heartbeat is up to an interval old); a stopped
        # daemon's last heartbeat is when it stopped.
        running = heartbeat.state == "running"
        uptime = (report.checked if running else heartbeat.time) - heartbeat.started
        lines.append(
            f"tickerd {heartbeat.version} {heartbeat.state}, pid {heartbeat.pid} on "
            f"{heartbeat.host}, {'up' if running else 'ran'} {_age(uptime)}, "
            f"heartbeat {_age(report.heartbeat_age or 0)} ago"
        )
    lines.append(f"redis {report.url}" + (f"  prefix {report.prefix!r}" if report.prefix else ""))
    source = heartbeat.source if heartbeat is not None else None
    if isinstance(source, DatabaseSourceSnapshot):  # subscriptions from PostgreSQL
        ignored = f", {len(source.problems)} row(s) ignored" if source.problems else ""
        lines.append(f"subscriptions {source.kind} {source.database} {source.state}{ignored}")
    if report.exchanges:
        rows = exchange_table(report.exchanges)
        lines += ["", *_table(rows, right=range(2, len(rows[0]) - 1))]  # LAST ERROR: free text
        details = symbol_problems(report.exchanges, report.checked)
        if details:
            lines += ["", *(f"  {kind:<9} {text}" for kind, text in details)]
    lines += ["", _verdict(report.level, report.reasons)]
    return "\n".join(lines)


@attrs.frozen
class MemberReport:
    """One fleet member: its record, and its own records judged as a single daemon's are."""

    member: Member
    report: Report

    @property
    def lease_age(self) -> float:
        return max(0.0, self.report.checked - self.member.time)

    @property
    def state(self) -> str:
        return "leaving" if self.member.leaving else LEVELS[self.report.level]

    def to_json(self) -> dict[str, Any]:
        member = self.member
        return {
            "instance": member.instance,
            "host": member.host,
            "pid": member.pid,
            "version": member.version,
            "started": member.started,
            "lease_age": self.lease_age,
            "leaving": member.leaving,
            "level": LEVELS[self.report.level],
            "reasons": self.report.reasons,
            "exchanges": {
                name: {"subscribed": len(collected.subscribed), "delivered": len(collected.delivered)}
                for name, collected in sorted(member.exchanges.items())
            },
        }


@attrs.frozen
class FleetReport:
    """What ``status`` knows of a fleet at one moment (``view`` is ``None`` when Redis gave
    nothing to look at)."""

    level: int
    reasons: list[str]
    url: str
    prefix: str
    name: str
    view: FleetView | None
    members: list[MemberReport]
    checked: float

    def to_json(self) -> dict[str, Any]:
        view = self.view
        return {
            "level": LEVELS[self.level],
            "exit_status": self.level,
            "reasons": self.reasons,
            "redis": self.url,
            "prefix": self.prefix,
            "fleet": self.name,
            "replicas": None if view is None else view.replicas,
            "members": [member.to_json() for member in self.members],
            "exchanges": {}
            if view is None
            else {
                name: {
                    "desired": ownership.desired,
                    "owned": ownership.desired - len(ownership.unowned),
                    "unowned": list(ownership.unowned),
                    "over_replicated": {symbol: list(ids) for symbol, ids in ownership.over.items()},
                }
                for name, ownership in view.exchanges.items()
            },
        }


def desired_of(config: Config) -> dict[str, tuple[str, ...]] | None:
    """The subscriptions the fleet is to collect as ``status`` can know them: the TOML file's;
    ``None`` when they come from a database (``status`` does not read it)."""
    if config.database.url is not None:
        return None
    return {name: exchange.symbols for name, exchange in config.exchanges.items()}


def read_fleet_report(
    client: topology.Client,
    url: str,
    prefix: str,
    name: str,
    replicas: int,
    desired: dict[str, tuple[str, ...]] | None,
) -> FleetReport:
    """Read fleet ``name``'s member records and each member's own records, and judge them
    (blocking: redis-py).  Down when Redis cannot be read or no member is alive or every member
    is down; degraded when a desired subscription is owned by nobody or a member is not healthy."""
    now = time.time()
    url = redact(url)

    def report(
        level: int,
        reasons: list[str],
        view: FleetView | None = None,
        members: list[MemberReport] | None = None,
    ) -> FleetReport:
        return FleetReport(level, reasons, url, prefix, name, view, members or [], now)

    try:
        members = read_members(client, RedisLayout(prefix), name)
    except (*topology.ERRORS, OSError) as exc:
        return report(DOWN, [unreachable(exc, url)])
    if not members:
        where = f"{url} (prefix {prefix!r})" if prefix else url
        return report(DOWN, [f"no member of fleet {name!r} is running: no member record in Redis at {where}"])
    reports = [MemberReport(m, read_report(client, url, prefix, instance=m.instance)) for m in members]
    view = survey(name, members, replicas, desired)
    reasons = [
        f"{r.member.instance}: {reason}"
        for r in reports
        if r.report.level != HEALTHY
        for reason in r.report.reasons
    ]
    if view.unowned:
        reasons.insert(0, f"{view.unowned} subscription(s) owned by nobody")
    level = DOWN if all(r.report.level == DOWN for r in reports) else DEGRADED if reasons else HEALTHY
    return report(level, reasons, view, reports)


def fleet_heading(name: str, members: int) -> str:
    """How a fleet is named with its size (``status``, ``watch`` and the status page)."""
    return f"fleet {name!r}: {members} member(s)"


def render_fleet(report: FleetReport) -> str:
    """The fleet table ``tickerd status`` prints in fleet mode."""
    view = report.view
    lines = []
    if view is not None:
        lines.append(f"{fleet_heading(report.name, len(view.members))}, replicas {view.replicas}")
    lines.append(f"redis {report.url}" + (f"  prefix {report.prefix!r}" if report.prefix else ""))
    if view is not None:
        members: list[tuple[str, ...]] = [("INSTANCE", "HOST", "PID", "LEASE AGE", "STATE", "COLLECTS")]
        for r in report.members:
            collects = ", ".join(
                f"{name} {len(collected.subscribed)}"
                for name, collected in sorted(r.member.exchanges.items())
            )
            members.append(
                (
                    r.member.instance,
                    r.member.host,
                    str(r.member.pid),
                    f"{r.lease_age:.1f} s",
                    r.state,
                    collects or "-",
                )
            )
        owned: list[tuple[str, ...]] = [("EXCHANGE", "DESIRED", "OWNED", "UNOWNED", "OVER REPLICAS")]
        for name, ownership in view.exchanges.items():
            unowned = len(ownership.unowned)
            owned.append(
                (
                    name,
                    str(ownership.desired),
                    str(ownership.desired - unowned),
                    str(unowned),
                    str(len(ownership.over)),
                )
            )
        lines += ["", *_table(members, right=(2, 3)), "", *_table(owned, right=(1, 2, 3, 4))]
        details = []
        for name, ownership in view.exchanges.items():
            details += [f"  unowned   {name} {symbol}" for symbol in ownership.unowned]
            details += [
                f"  over      {name} {symbol}: {', '.join(ids)}" for symbol, ids in ownership.over.items()
            ]
        if details:
            lines += ["", *details]
    lines += ["", _verdict(report.level, report.reasons)]
    return "\n".join(lines)


def _verdict(level: int, reasons: list[str]) -> str:
    """The last line of both tables: the level and why."""
    return f"status: {LEVELS[level]}" + (f" ({'; '.join(reasons)})" if reasons else "")


def fleet_summary_line(report: FleetReport) -> str:
    """One line for a live view of a fleet: the level, the members, each exchange's ownership,
    and the reasons when it is not healthy."""
    parts = [LEVELS[report.level].upper()]
    if report.view is not None:
        parts.append(fleet_heading(report.name, len(report.view.members)))
        for name, ownership in report.view.exchanges.items():
            owned = ownership.desired - len(ownership.unowned)
            parts.append(f"{name} {owned}/{ownership.desired} owned")
    if report.level != HEALTHY:
        parts.extend(report.reasons)
    return " · ".join(parts)


def read_any(client: topology.Client, url: str, config: Config) -> Report | FleetReport:
    """The daemon's report, or the fleet's in fleet mode (blocking)."""
    if config.fleet.name is None:
        return read_report(client, url, config.redis.prefix)
    return read_fleet_report(
        client, url, config.redis.prefix, config.fleet.name, config.fleet.replicas, desired_of(config)
    )


def unreached(config: Config, url: str, error: BaseException) -> Report | FleetReport:
    """What ``status`` says when it cannot even make a client for ``url`` (down)."""
    reasons, shown, prefix, now = [unreachable(error, url)], redact(url), config.redis.prefix, time.time()
    if config.fleet.name is None:
        return Report(DOWN, reasons, shown, prefix, None, {}, now)
    return FleetReport(DOWN, reasons, shown, prefix, config.fleet.name, None, [], now)


def read_summary(client: topology.Client, url: str, config: Config) -> str:
    """The status line of ``watch``: the fleet's in fleet mode, else the daemon's (blocking)."""
    report = read_any(client, url, config)
    return summary_line(report) if isinstance(report, Report) else fleet_summary_line(report)


def _table(rows: list[tuple[str, ...]], right: Container[int]) -> list[str]:
    """``rows`` as aligned columns, those in ``right`` right-aligned (no trailing blanks)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def run_status(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    url = embedded.locate(config.redis)
    try:
        client = topology.client(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    except topology.ERRORS as exc:  # a cluster's client asks for the slot map as it is made
        report = unreached(config, url, exc)
    else:
        try:
            report = read_any(client, url, config)
        finally:
            client.close()
    if isinstance(report, Report):
        shown, text = report.to_json(), render(report)
    else:
        shown, text = report.to_json(), render_fleet(report)
    if args.json:
        sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(text)
    return report.level


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show the running daemon's (or fleet's) health from Redis (exit 0 healthy, 1 degraded, 2 down)",
        description="Show the daemon's health from its records in Redis; in fleet mode every member, "
        "and the subscriptions owned by nobody (degraded) or by more than the replicas. "
        "Exit status: 0 healthy, 1 degraded, 2 down or not running.",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON, for programs")
    parser.set_defaults(func=run_status)
