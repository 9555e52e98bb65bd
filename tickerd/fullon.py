"""fullon process records: tickerd as fullon's dashboards and health checks see it.

fullon's programs register themselves in Redis through fullon_cache's ``ProcessCache``, and
its ``get_system_health()`` judges the system from those records: a ticker service without
any looks like no ticker service at all.  tickerd writes its own in the same layout
(:class:`~tickerd.layout.RedisLayout`, "fullon process records"), under its ``redis.prefix``:

* ``process:data:{process_id}``: a :class:`ProcessData` as JSON, expiring after
  :data:`EXPIRY` (fullon's own 24 h), rewritten whole on every update;
* ``process:active:tick``: hash, process id → ISO time of its last update;
* ``process:components``: hash, component → process id.

A process id is ``tick:{component}:{epoch float}``, as ``ProcessCache.register_process``
makes them.  The components are ``ticker_daemon`` (the daemon), plus one per exchange
(``{exchange}``; the default) or one per subscribed symbol (``{exchange}:{symbol}``, as the
service tickerd replaces registered them: a record per symbol per interval).

The records ride the health monitor (:mod:`tickerd.monitor`): a component's record is written
when the monitor writes its exchange's health record (or the heartbeat, for the daemon), so at
most once per ``health.interval`` plus once per state change, through the single writer.  A
symbol's record is written at its exchange's interval, and on a change only if its own status
or message changed.

The two hashes are shared with every other fullon program, so tickerd touches only the fields
of the processes it created (``HSET``/``HDEL`` of a field, never a ``DEL``), and removes a
component's entry only while it still names tickerd's process (a program that registered
the same component since keeps its entry).  A component that ends (an exchange or symbol
removed, the daemon stopped cleanly) is stopped as ``ProcessCache.stop_process`` does it:
its record says ``stopped`` (heartbeat not advanced), its id leaves the active hash and its
component the index.

tickerd states → fullon statuses (:func:`exchange_status`, :func:`symbol_status`):

========================================  =========  ==========================================
tickerd                                   status     message
========================================  =========  ==========================================
exchange ``connected``                    running    symbols, and how many stale or rejected
exchange ``connecting`` (first attempt)   starting   ``connecting``
exchange ``reconnecting``, ``degraded``,  error      the state and the last error
``failed``, ``down``
exchange ``idle`` (no symbols)            idle       ``no symbols subscribed``
symbol fresh / waiting for its first      running /  ``collecting`` / ``waiting for the first
ticker                                    starting   ticker``
symbol ``stale`` / ``rejected``           error      since when / the exchange's reason
symbol of an exchange in ``error``        error      the exchange's message
daemon: every exchange failed or down     error      the reasons (:func:`tickerd.health.assess`)
daemon otherwise                          running    what it collects, and any problem
a clean stop, a component removed         stopped    why
========================================  =========  ==========================================

fullon's ``processing`` has no tickerd counterpart and is not used.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime

import attrs
import orjson

from tickerd.health import CONNECTED, CONNECTING, DOWN, assess
from tickerd.layout import RedisLayout
from tickerd.snapshots import DaemonHealth, ExchangeSnapshot
from tickerd.version import __version__
from tickerd.writer import RedisWriter

#: The component of the daemon itself, as the replaced service named it.
DAEMON = "ticker_daemon"
#: fullon's ``ProcessType.TICK``.
PROCESS_TYPE = "tick"
#: Seconds a process record lives after its last update: fullon's ``ProcessCache`` value.
#: Liveness is judged by ``heartbeat`` and the active hash's time, as fullon does.
EXPIRY = 86_400
#: fullon's ``ProcessStatus`` values.
STATUSES = ("starting", "running", "processing", "idle", "error", "stopped")

#: A record's ``params``: JSON values.
Params = Mapping[str, object]


@attrs.frozen
class ProcessData:
    """One process record as fullon's ``ProcessCache`` stores it (its field names are the
    JSON keys fullon's readers use)."""

    process_id: str
    #: Always :data:`PROCESS_TYPE`.
    process_type: str
    component: str
    params: Params
    #: One of :data:`STATUSES`.
    status: str
    message: str
    #: ISO 8601 UTC times (``datetime.isoformat()``: ``2026-01-31T12:00:00.123456+00:00``).
    created_at: str
    updated_at: str
    heartbeat: str


def exchange_status(snapshot: ExchangeSnapshot) -> tuple[str, str]:
    """An exchange's fullon status and message (the table in the module's docstring)."""
    state = snapshot.state
    if state == CONNECTED:
        counts = [f"{len(snapshot.symbols)} symbols"]
        counts += [f"{len(snapshot.stale)} stale"] if snapshot.stale else []
        counts += [f"{len(snapshot.rejected)} rejected"] if snapshot.rejected else []
        return "running", ", ".join(counts)
    if state == CONNECTING:
        return "starting", "connecting"
    if state == "idle":
        return "idle", "no symbols subscribed"
    return "error", f"{state}: {snapshot.last_error or 'no error reported'}"


def symbol_status(snapshot: ExchangeSnapshot, symbol: str, exchange: tuple[str, str]) -> tuple[str, str]:
    """One symbol's fullon status and message, given its exchange's (``exchange``): a symbol
    cannot be fresher than its exchange's connections."""
    if symbol in snapshot.rejected:
        return "error", f"rejected: {snapshot.rejected[symbol]}"
    if exchange[0] == "error":
        return exchange
    last = snapshot.last_tick.get(symbol)
    if symbol in snapshot.stale:
        return "error", "stale: no ticker yet" if last is None else f"stale: no ticker since {_iso(last)}"
    if last is not None:  # not the time (params has it): the record would change with each ticker
        return "running", "collecting"
    return "starting", "waiting for the first ticker"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


@attrs.define
class _Process:
    """A process this daemon created, while its component runs."""

    #: What was written last (a symbol's record is rewritten early only when its status or
    #: message changes; a stop keeps its params).
    record: ProcessData
    #: Whether its entry in the components hash was written (again after Redis reconnected:
    #: a restarted server lost it).
    indexed: bool = False


class ProcessRecords:
    """The fullon process records of one daemon, written by its health monitor."""

    def __init__(self, writer: RedisWriter, layout: RedisLayout, per: str) -> None:
        """``per`` is ``exchange`` or ``symbol``: what a component is besides the daemon."""
        self._writer = writer
        self._layout = layout
        self._per_symbol = per == "symbol"
        self._active = layout.process_active(PROCESS_TYPE)
        #: Component → its running process, created by this daemon.
        self._processes: dict[str, _Process] = {}
        #: Exchange → the components that stand for it (itself, or one per symbol).
        self._components: dict[str, set[str]] = {}
        writer.reconnected.connect(self._reconnected)

    def _reconnected(self, _: None) -> None:
        """Redis may have restarted empty: the monitor rewrites every record, and each of
        them writes its component's entry again with it."""
        for process in self._processes.values():
            process.indexed = False

    def daemon(self, health: DaemonHealth) -> None:
        """The daemon's record (written with the heartbeat)."""
        level, reasons = assess(health.exchanges, health.source, health.fleet_store)
        symbols = sum(len(snapshot.symbols) for snapshot in health.exchanges.values())
        collecting = f"collecting {symbols} symbols on {len(health.exchanges)} exchanges"
        params = {
            "exchanges": sorted(health.exchanges),
            "symbols": symbols,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "version": __version__,
        }
        status = "error" if level == DOWN else "running"
        self._write(DAEMON, status, "; ".join([collecting, *reasons]), params)

    def exchange(self, name: str, snapshot: ExchangeSnapshot, *, steady: bool) -> None:
        """``name``'s record (or its symbols'), written with its health record: ``steady`` for
        the interval's write, else for a state change."""
        status, message = exchange_status(snapshot)
        if not self._per_symbol:
            params = {
                "symbols": len(snapshot.symbols),
                "state": snapshot.state,
                "last_error": snapshot.last_error,
            }
            self._components[name] = {name}
            self._write(name, status, message, params)
            return
        components = {f"{name}:{symbol}": symbol for symbol in snapshot.symbols}
        for component in self._components.get(name, set()) - components.keys():
            self._stop(component, "unsubscribed")
        self._components[name] = set(components)
        for component, symbol in components.items():
            said = symbol_status(snapshot, symbol, (status, message))
            if steady or self._said(component) != said:
                last = snapshot.last_tick.get(symbol)
                params = {
                    "exchange": name,
                    "symbol": symbol,
                    "last_tick": None if last is None else _iso(last),
                }
                self._write(component, *said, params)

    def exchange_gone(self, name: str) -> None:
        """``name`` is no longer collected (a configuration change): its processes stop."""
        for component in self._components.pop(name, set()):
            self._stop(component, "exchange removed")

    def stop(self) -> None:
        """A clean shutdown: every process of this daemon is stopped."""
        for component in list(self._processes):
            self._stop(component, "tickerd stopped")
        self._components.clear()

    def _said(self, component: str) -> tuple[str, str] | None:
        process = self._processes.get(component)
        return None if process is None else (process.record.status, process.record.message)

    def _write(self, component: str, status: str, message: str, params: Params) -> None:
        now = datetime.now(UTC)
        stamp = now.isoformat()
        process = self._processes.get(component)
        if process is None:
            process_id = f"{PROCESS_TYPE}:{component}:{now.timestamp()}"
            record = ProcessData(
                process_id, PROCESS_TYPE, component, params, status, message, stamp, stamp, stamp
            )
            process = self._processes[component] = _Process(record)
        else:
            record = process.record = attrs.evolve(
                process.record,
                params=params,
                status=status,
                message=message,
                updated_at=stamp,
                heartbeat=stamp,
            )
        self._put(record)
        self._writer.put_field(self._active, record.process_id, stamp)
        if not process.indexed:
            self._writer.put_field(self._layout.process_components(), component, record.process_id)
            process.indexed = True

    def _stop(self, component: str, message: str) -> None:
        """As ``ProcessCache.stop_process``: ``stopped`` (the heartbeat stays the last sign of
        life), out of the active hash, out of the index unless another process took it over."""
        process = self._processes.pop(component, None)
        if process is None:
            return
        stamp = datetime.now(UTC).isoformat()
        record = attrs.evolve(process.record, status="stopped", message=message, updated_at=stamp)
        self._put(record)
        self._writer.put_field(self._active, record.process_id, None)
        self._writer.put_field(self._layout.process_components(), component, None, owner=record.process_id)

    def _put(self, record: ProcessData) -> None:
        value = orjson.dumps(attrs.asdict(record))
        self._writer.put_record(self._layout.process_data(record.process_id), value, EXPIRY)
