"""``tickerd status``: the daemon's health, read from its records in Redis.

It reads what the daemon wrote (:mod:`tickerd.monitor`), so it works from any machine that
reaches the Redis, and a daemon that died shows as down once its heartbeat is old or gone.
Exit status: 0 healthy, 1 degraded, 2 down or not running (and 2 for a bad configuration).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
import orjson

from tickerd import embedded, topology
from tickerd.commands import EXIT_CONFIG, add_config_option, load_or_report
from tickerd.health import DEGRADED, DOWN, LEVELS, assess
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


def read_report(client: topology.Client, url: str, prefix: str) -> Report:
    """Read the records and judge them (blocking: redis-py); ``url`` is shown redacted."""
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
        heartbeat, exchanges = RedisLayout(prefix).read_health(client)
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
    level, reasons = assess(exchanges, heartbeat.source)
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
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        lines.append("")
        for row in rows:
            cells = [
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row[:-1], widths, strict=True))
            ]
            lines.append("  ".join([*cells, row[-1]]))
        details = symbol_problems(report.exchanges, report.checked)
        if details:
            lines += ["", *(f"  {kind:<9} {text}" for kind, text in details)]
    lines.append("")
    lines.append(
        f"status: {LEVELS[report.level]}" + (f" ({'; '.join(report.reasons)})" if report.reasons else "")
    )
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    url = embedded.locate(config.redis)
    try:
        client = topology.client(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    except topology.ERRORS as exc:  # a cluster's client asks for the slot map as it is made
        report = Report(
            DOWN, [unreachable(exc, url)], redact(url), config.redis.prefix, None, {}, time.time()
        )
    else:
        try:
            report = read_report(client, url, config.redis.prefix)
        finally:
            client.close()
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(render(report))
    return report.level


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show the running daemon's health from Redis (exit 0 healthy, 1 degraded, 2 down)",
        description="Show the daemon's health from its records in Redis. "
        "Exit status: 0 healthy, 1 degraded, 2 down or not running.",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON, for programs")
    parser.set_defaults(func=run_status)
