"""In-memory health of every exchange, kept by the feeds and read through the daemon handle.

The feeds report facts (a connection opened, failed, a symbol was refused); derived views
such as an exchange's overall state are computed on read, so there is no second copy of the
truth to keep in sync.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import attrs

from tickerd.broadcast import Broadcast
from tickerd.snapshots import DaemonHealth, DatabaseSourceSnapshot, ExchangeSnapshot, SourceSnapshot

#: States of one connection (a feed), from the loop's point of view.
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
FAILED = "failed"
#: An exchange's state when none of its connections is open, attempts are failing, and it never
#: delivered a ticker: nothing is collected, and nothing ever was.
EXCHANGE_DOWN = "down"
#: Every state an exchange reports (``ExchangeSnapshot.state``), the healthy ones first.
EXCHANGE_STATES = (CONNECTED, "idle", CONNECTING, RECONNECTING, "degraded", FAILED, EXCHANGE_DOWN)


@attrs.define
class ExchangeHealth:
    """What one exchange's feeds have reported."""

    name: str
    #: (feed id, endpoint group) → the state of that connection.
    feed_states: dict[tuple[int, str], str] = attrs.field(factory=dict)
    reconnects: int = 0
    last_error: str | None = None
    last_error_ts: float | None = None
    rejected: dict[str, str] = attrs.field(factory=dict)
    #: Subscribed symbols without an update for ``health.stale_after`` (kept by the runner).
    stale: set[str] = attrs.field(factory=set)
    #: Fired with this record on every state change (connected, reconnecting, failed,
    #: rejected, stale).
    changed: Broadcast[ExchangeHealth] = attrs.field(factory=Broadcast, repr=False, eq=False)

    @property
    def state(self) -> str:
        """``connected`` when every connection is up, ``failed`` when all gave up,
        ``degraded`` when some gave up, else the in-between state of the others."""
        states = set(self.feed_states.values())
        if not states or states == {CONNECTED}:
            return CONNECTED if states else "idle"
        if states == {FAILED}:
            return FAILED
        if FAILED in states:
            return "degraded"
        return RECONNECTING if RECONNECTING in states else CONNECTING

    def reported_state(self, delivered: bool) -> str:
        """:attr:`state` as snapshots report it: ``down`` when no connection is open, attempts
        are failing and no ticker was ever ``delivered`` (an exchange that cannot be reached
        from the start is not merely "reconnecting"), else :attr:`state`."""
        state = self.state
        if not delivered and not self.connections and state in (RECONNECTING, "degraded"):
            return EXCHANGE_DOWN
        return state

    @property
    def connections(self) -> int:
        """Open websocket connections (sessions that are subscribed and reading)."""
        return sum(state == CONNECTED for state in self.feed_states.values())

    def set_feed_state(self, connection: tuple[int, str], state: str) -> None:
        if self.feed_states.get(connection) != state:
            self.feed_states[connection] = state
            self._changed()

    def drop_feed(self, connection: tuple[int, str]) -> None:
        if self.feed_states.pop(connection, None) is not None:
            self._changed()

    def error(self, message: str) -> None:
        self.last_error = message
        self.last_error_ts = time.time()

    def reject(self, symbol: str, reason: str) -> None:
        if self.rejected.get(symbol) != reason:
            self.rejected[symbol] = reason
            self.error(f"{symbol} rejected: {reason}")
            self._changed()

    def accept(self, symbol: str) -> None:
        if self.rejected.pop(symbol, None) is not None:
            self._changed()

    def update_stale(self, stale: Iterable[str], fresh: Iterable[str]) -> None:
        """Add the symbols that went ``stale``, drop those ``fresh`` again (or gone); a change
        is a state change.  Given the changes only, so a check pays for what changed."""
        before = len(self.stale)
        self.stale.difference_update(fresh)
        removed = before != len(self.stale)
        before = len(self.stale)
        self.stale.update(stale)
        if removed or before != len(self.stale):
            self._changed()

    def _changed(self) -> None:
        self.changed.fire(self)


#: Overall levels, which are also ``tickerd status``'s exit statuses.
HEALTHY, DEGRADED, DOWN = 0, 1, 2
LEVELS = ("healthy", "degraded", "down")


def assess(
    exchanges: Mapping[str, ExchangeSnapshot],
    source: SourceSnapshot | None = None,
    fleet_store: str | None = None,
) -> tuple[int, list[str]]:
    """The overall level of a set of exchange snapshots, and why it is not healthy.

    One rule for ``/healthz`` (the live daemon) and ``tickerd status`` (the records in
    Redis): down when every exchange failed or is down (never delivered and cannot connect);
    degraded when any is not fully connected or has stale or rejected symbols, when the
    database the subscriptions come from is unavailable (collection goes on, but changes
    cannot arrive), or when a fleet member cannot reach its membership store (``fleet_store``
    says why: it collects its last assignment, but the fleet cannot rebalance around it, nor it
    around the others); healthy otherwise.  Symbols still waiting for their first ticker are
    not a problem yet: past ``stale_after`` they are stale.
    """
    reasons: list[str] = []
    if isinstance(source, DatabaseSourceSnapshot) and source.state == "down":
        reasons.append(f"subscriptions database {source.database} unavailable: {source.last_error}")
    if fleet_store is not None:
        reasons.append(f"fleet membership: {fleet_store}; collecting the last assignment, no rebalancing")
    failed = 0
    for name, record in sorted(exchanges.items()):
        state = record.state
        if state in (FAILED, EXCHANGE_DOWN):
            failed += 1
        if state not in (CONNECTED, "idle"):
            reasons.append(f"{name}: {state}")
        if record.stale:
            reasons.append(f"{name}: {len(record.stale)} stale symbol(s)")
        if record.rejected:
            reasons.append(f"{name}: {len(record.rejected)} rejected symbol(s)")
    if exchanges and failed == len(exchanges):
        return DOWN, reasons
    return (DEGRADED if reasons else HEALTHY), reasons


def assess_daemon(health: DaemonHealth) -> tuple[int, list[str]]:
    """:func:`assess` for the live daemon, which also knows whether Redis takes its writes: down
    while it does not (``/healthz`` and the status systemd shows)."""
    level, reasons = assess(health.exchanges, health.source, health.fleet_store)
    if not health.writer.redis_up:
        return DOWN, [*reasons, health.writer.reason or "Redis takes no writes"]
    return level, reasons
