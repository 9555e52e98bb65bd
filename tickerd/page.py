"""The live status page's content: what ``tickerd watch`` and ``tickerd status`` show, for a
browser, pushed as server-sent events (:mod:`tickerd.web` serves it).

It is fed by the daemon it runs in, not by Redis: the tickers of each written batch
(``RedisWriter.batch_written``) go on a :class:`~tickerd.board.Board`, the exchanges are
``daemon.health()``, judged by the rule ``/healthz`` uses (:func:`~tickerd.health.assess_daemon`).
So the page keeps working, and says why, while Redis is down, and costs no Redis connection.
Taking a batch is a dict store per ticker; nothing is formatted while no browser is connected.

Each connected browser gets a whole view (:meth:`StatusPage.view`, JSON) on connecting, after
changes (at most every :data:`REDRAW_EVERY` s) and every second for the ages, like the terminal
view.  The cells are the board's and ``status``'s own text, and the page's script only puts
them in place: prices, ages and fresh or stale are decided here, in one place.  A fleet member
also shows its fleet (:func:`fleet_view`, from ``DaemonHealth.fleet``): this member's view of
it, where ``tickerd status`` shows every member's record.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import orjson
import trio

from tickerd.board import Board
from tickerd.broadcast import Broadcast
from tickerd.commands.status import exchange_table, fleet_heading, symbol_problems
from tickerd.daemon import TickerDaemon
from tickerd.health import LEVELS, assess_daemon
from tickerd.snapshots import FleetSnapshot
from tickerd.version import __version__
from tickerd.writer import Written

#: Shortest time between two views sent to a browser (changes in between go together).
REDRAW_EVERY = 0.2
#: Longest time between two views: the ages move on.
AGES_EVERY = 1.0
#: How soon a browser reconnects after the stream broke (ms; the ``retry`` field of SSE).
RECONNECT_MS = 1000


def _up_or_why(up: bool, reason: str | None) -> str:
    """``up``, else why not (Redis for the writes, and for a fleet's membership)."""
    return "up" if up else (reason or "down")


def fleet_view(fleet: FleetSnapshot, exchanges: Iterable[str]) -> dict[str, object]:
    """A fleet member's part of the view: the fleet, this instance, the members, whether the
    membership store answers, and per exchange (each of ``exchanges``, and any the snapshot
    names) the symbols this member owns and those it holds until their new owners deliver."""
    names = sorted({*exchanges, *fleet.owned, *fleet.handover})
    return {
        "heading": fleet_heading(fleet.name, len(fleet.members)),
        "instance": fleet.instance,
        "members": list(fleet.members),
        "store": _up_or_why(fleet.store_up, fleet.reason),
        "store_up": fleet.store_up,
        "exchanges": {
            "columns": ["EXCHANGE", "OWNED", "HANDOVER"],
            "rows": [
                [name, str(fleet.owned.get(name, 0)), str(fleet.handover.get(name, 0))] for name in names
            ],
        },
    }


class StatusPage:
    """The board of the daemon's written tickers, its health, and the stream of views."""

    def __init__(self, daemon: TickerDaemon, title: str = "tickerd") -> None:
        self.daemon = daemon
        self.title = title
        self.board = Board(daemon.config.health.stale_after)
        #: Counts changes (a written batch, a health change), so a stream knows whether it
        #: missed one while it paced itself.
        self.version = 0
        self.changed: Broadcast[None] = Broadcast()
        daemon.writer.batch_written.connect(self._written)
        daemon.health_changes.connect(self._health_changed)

    def _written(self, written: Written) -> None:
        self.board.take(written[0])
        self._touch()

    def _health_changed(self, _: str | None) -> None:
        self._touch()

    def _touch(self) -> None:
        self.version += 1
        self.changed.fire(None)

    def view(self, now: float | None = None) -> dict[str, object]:
        """Everything the page shows at ``now``: the level and its reasons, Redis, one row per
        exchange, the stale and refused symbols, the fleet (``None`` for a single instance),
        and one row per ticker."""
        now = time.time() if now is None else now
        health = self.daemon.health()
        level, reasons = assess_daemon(health)
        writer = health.writer
        exchanges = exchange_table(health.exchanges)
        tickers = self.board.table(now)
        return {
            "title": self.title,
            "version": __version__,
            "clock": datetime.fromtimestamp(now).strftime("%H:%M:%S"),
            "level": LEVELS[level],
            "reasons": reasons,
            "redis": _up_or_why(writer.redis_up, writer.reason),
            "written": writer.written,
            "exchanges": {"columns": exchanges[0], "rows": exchanges[1:]},
            "problems": symbol_problems(health.exchanges, now),
            "fleet": None if health.fleet is None else fleet_view(health.fleet, health.exchanges),
            "tickers": {
                "columns": tickers.columns,
                "rows": [
                    {"exchange": r.exchange, "symbol": r.symbol, "cells": r.cells, "stale": r.stale}
                    for r in tickers.rows
                ],
            },
        }

    def event(self) -> bytes:
        """The current view as one server-sent event."""
        return b"data: " + orjson.dumps(self.view()) + b"\n\n"

    async def stream(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Send views to one browser until cancelled: now, then after each change (paced), and
        at least every :data:`AGES_EVERY` s."""
        await send(f"retry: {RECONNECT_MS}\n\n".encode())
        while True:
            sent = self.version
            await send(self.event())
            await trio.sleep(REDRAW_EVERY)
            if self.version == sent:
                with trio.move_on_after(AGES_EVERY - REDRAW_EVERY):
                    await self.changed.wait()
