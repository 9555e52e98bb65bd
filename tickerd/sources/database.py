"""What the PostgreSQL sources share: a connection used from worker threads, the
read → apply → follow loop, and riding out outages.

psycopg has no trio API, so each blocking call runs in a worker thread (``trio.to_thread``),
one at a time.  Waiting for notifications needs no thread: the source waits for the
connection's socket with ``trio.lowlevel.wait_readable``.

An outage never stops collection: the daemon keeps the last desired set it was given, the
source logs the outage once, reconnects with backoff, logs the end once and re-reads.
"""

from __future__ import annotations

import abc
import random
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import attrs
import psycopg
import trio
from loguru import logger
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tickerd import exchanges
from tickerd.config import Config, ConfigError, ExchangeConfig
from tickerd.exchanges.base import Exchange
from tickerd.snapshots import DatabaseSourceSnapshot
from tickerd.sources.base import Source, Subscriptions

T = TypeVar("T")

#: One row a source reads: exchange, symbol (``None`` for an exchange without symbols), url
#: override (``None``: the TOML's, else the adapter's).
Row = tuple[str, str | None, str | None]

#: Connection settings that keep a dead or hung server from blocking a call for long; a
#: setting given in the URL wins.
_CONNECT_DEFAULTS: dict[str, str | int] = {
    "connect_timeout": 5,
    "application_name": "tickerd",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class SchemaError(Exception):
    """The database answers but does not hold what the source reads (a missing or old
    schema, no such fullon user).  Fatal at start, an outage afterwards."""


def conninfo(url: str) -> str:
    """``url`` with :data:`_CONNECT_DEFAULTS` for what it does not set itself."""
    given = conninfo_to_dict(url)
    return make_conninfo(url, **{k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given})


def describe(url: str) -> str:
    """``host:port/dbname`` for messages: enough to recognise the database, never a password."""
    info = conninfo_to_dict(url)
    return (
        f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', info.get('user', ''))}"
    )


def one_line(exc: BaseException) -> str:
    """libpq's messages span lines (``DETAIL``, hints); logs and health want one."""
    return " ".join(str(exc).split())


class Link:
    """One psycopg connection, used by one blocking call at a time from a worker thread.

    A call interrupted by shutdown is abandoned rather than waited for (a hung server must not
    hold up the exit), so the thread may still use the connection after the task has moved
    on: whichever of that call and :meth:`close` comes last closes it, never both at once.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._busy = False
        self._closing = False

    @classmethod
    async def open(cls, conninfo: str) -> Link:
        connect = partial(psycopg.connect, conninfo, autocommit=True)
        return cls(await trio.to_thread.run_sync(connect, abandon_on_cancel=True))

    async def call(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn(connection)`` in a worker thread."""

        def run() -> T:
            with self._lock:
                if self._closing:
                    raise psycopg.OperationalError("the connection is closed")
                self._busy = True
            try:
                return fn(self.conn)
            finally:
                with self._lock:
                    self._busy = False
                    if self._closing:
                        self.conn.close()

        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if not self._busy:
                self.conn.close()


class DatabaseSource(Source):
    """Connect, check, read, apply, wait for a change; on any database error, keep what
    runs and reconnect with backoff.  Subclasses say what to check and read, and how to
    wait for a change."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        assert config.database.url is not None
        self.settings = config.database
        self.where = describe(config.database.url)
        self._conninfo = conninfo(config.database.url)
        #: ``connecting`` until the first answer, then ``up`` or ``down``.
        self.state = "connecting"
        self.reads = 0
        self.notifications = 0
        self.last_read: float | None = None
        self.last_error: str | None = None
        #: Rows that cannot be used (unknown exchange, symbol in the wrong form), as messages.
        self.problems: list[str] = []
        self._down_since = 0.0
        # The feeds' reconnect policy, capped at the re-read interval: a database that is
        # back is noticed at least as soon as a change would have been.
        self._backoff = attrs.evolve(
            config.feed.backoff, cap=min(config.feed.max_reconnect_delay, self.settings.refresh)
        )
        self._rng = random.Random()

    # -- what subclasses provide (the first two run in a worker thread) ---------------------

    @abc.abstractmethod
    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Check that the database holds what :meth:`_read` reads (else :class:`SchemaError`)
        and ask for change notifications where there are any."""

    @abc.abstractmethod
    def _read(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every enabled exchange with each of its enabled symbols."""

    async def _wait_for_change(self, link: Link) -> None:
        """Return when the desired set may have changed; without notifications, that is
        every ``refresh`` seconds."""
        await trio.sleep(self.settings.refresh)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, daemon: Subscriptions, *, task_status: trio.TaskStatus[None]) -> None:
        started = False
        failures = 0
        while True:
            try:
                link = await Link.open(self._conninfo)
                try:
                    await link.call(self._prepare)
                    while True:
                        rows = await link.call(self._read)
                        desired = self._desired(rows)
                        self._up()
                        failures = 0
                        await daemon.apply(desired)
                        if not started:
                            started = True
                            task_status.started()
                        await self._wait_for_change(link)
                finally:
                    link.close()
            except SchemaError as exc:
                if not started:
                    raise ConfigError(str(exc)) from None
                reason = str(exc)
            except psycopg.Error as exc:
                reason = one_line(exc)
            self._down(reason, daemon)
            if not started:
                started = True
                task_status.started()
            failures += 1
            await trio.sleep(self._backoff.delay(failures, self._rng))

    def _up(self) -> None:
        """A read succeeded (every read is news to health watchers: ``reads``, ``last_read``)."""
        self.reads += 1
        self.last_read = time.time()
        if self.state == "down":
            logger.info(
                "PostgreSQL {where} is back after {s:.1f} s; subscriptions re-read",
                where=self.where,
                s=trio.current_time() - self._down_since,
            )
        elif self.state == "connecting":
            logger.info("subscriptions from PostgreSQL {where} ({kind})", where=self.where, kind=self.kind)
        self.state = "up"
        self._changed()

    def _down(self, reason: str, daemon: Subscriptions) -> None:
        self.last_error = reason
        if self.state == "down":
            logger.debug("PostgreSQL still unavailable: {reason}", reason=reason)
            return
        if self.state == "connecting":
            what = "no subscriptions until it answers"
        else:
            kept = sum(len(symbols) for symbols in daemon.symbols().values())
            what = f"keeping the last known {kept} subscriptions running"
        logger.warning(
            "PostgreSQL {where} unavailable ({reason}); {what}; retrying",
            where=self.where,
            reason=reason,
            what=what,
        )
        self.state = "down"
        self._down_since = trio.current_time()
        self._changed()

    def _desired(self, rows: Iterable[Row]) -> dict[str, ExchangeConfig]:
        """Rows → the desired set, skipping (and reporting once) rows tickerd cannot use.

        A url in the database overrides the TOML's ``[exchanges.NAME]`` one; where it is
        ``NULL`` the daemon's ``apply`` keeps the configured ``url`` and ``engine``.
        """
        found: dict[str, list[str]] = {}
        urls: dict[str, str | None] = {}
        adapters: dict[str, Exchange | None] = {}
        problems: list[str] = []
        for exchange, symbol, url in rows:
            if exchange not in adapters:
                try:
                    adapters[exchange] = exchanges.get(exchange)
                except KeyError as exc:
                    adapters[exchange] = None
                    problems.append(str(exc.args[0]))
            adapter = adapters[exchange]
            if adapter is None:
                continue
            symbols = found.setdefault(exchange, [])
            urls[exchange] = url
            if symbol is None:
                continue
            try:
                adapter.check_symbol(symbol)
            except ValueError as exc:
                problems.append(f"{exchange}: {exc}")
                continue
            symbols.append(symbol)
        desired = {}
        for name, symbols in found.items():
            try:  # ExchangeConfig validates the url as the TOML's is (ws:// or wss://)
                desired[name] = ExchangeConfig(symbols=tuple(symbols), url=urls[name])
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        self._report(problems)
        return desired

    def _report(self, problems: list[str]) -> None:
        """Warn about each unusable row once (not on every re-read); health lists them all."""
        for problem in problems:
            if problem not in self.problems:
                logger.warning("ignoring a database row: {problem}", problem=problem)
        if problems != self.problems:
            self.problems = problems
            self._changed()

    def snapshot(self) -> DatabaseSourceSnapshot:
        return DatabaseSourceSnapshot(
            kind=self.kind,
            database=self.where,
            state=self.state,
            reads=self.reads,
            notifications=self.notifications,
            last_read=self.last_read,
            last_error=self.last_error,
            problems=tuple(self.problems),
        )
