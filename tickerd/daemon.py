"""The daemon: wires the writer, one nursery per exchange and its feeds; the public handle.

``trio.run(tickerd.serve, config)`` runs until cancelled.  Under ``nursery.start`` it reports
a :class:`TickerDaemon` handle once running, through which symbols are added and removed
live: an added symbol joins a connection with room for it (or a new one) without restarting
any other connection, and a removed one is unsubscribed on its own connection.

Each exchange's runner owns its feeds, so it also judges their staleness (see
:meth:`_ExchangeRunner.check_staleness`).  Everything outside this module sees the daemon
through its handle only: ``health()`` (typed snapshots), ``health_changes`` and
``add``/``remove``/``apply``/``symbols``; nothing reaches into runners, feeds or sessions.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Mapping

import attrs
import trio

from tickerd import exchanges, sources
from tickerd.broadcast import Broadcast
from tickerd.config import Config, ExchangeConfig
from tickerd.exchanges.base import Exchange
from tickerd.feed import Feed
from tickerd.fleet.membership import Membership
from tickerd.fleet.share import FleetSubscriptions
from tickerd.freshness import Staleness
from tickerd.fullon import ProcessRecords
from tickerd.health import ExchangeHealth
from tickerd.layout import RedisLayout
from tickerd.lease import RELEASE_TIMEOUT, PrefixLease
from tickerd.logs import logger
from tickerd.monitor import HealthMonitor
from tickerd.pacing import Pacer
from tickerd.snapshots import DaemonHealth, ExchangeSnapshot, WriterStats
from tickerd.sources import Source, Subscriptions
from tickerd.writer import RedisWriter

#: Seconds after start with no exchange connected yet before tickerd suggests that the machine
#: may be offline (a first run without a network is the common cause).
OFFLINE_HINT_AFTER = 60.0
#: Seconds of the shutdown grace (at most half of it) a departing fleet member leaves to the
#: writer's final flush; the rest it may spend waiting for the others to take its symbols.
DEPART_FLUSH = 1.0


class _ExchangeRunner:
    """One exchange: its nursery, its feeds (connections), their health and staleness."""

    def __init__(self, daemon: TickerDaemon, name: str, settings: ExchangeConfig) -> None:
        self.daemon = daemon
        self.adapter: Exchange = exchanges.get(name)
        self.settings = settings
        self.url = settings.url or self.adapter.url
        self.health = ExchangeHealth(name)
        self.feeds: list[Feed] = []
        #: Symbols asked for before the exchange's nursery runs.
        self.wanted: list[str] = list(settings.symbols)
        self.started = False
        self.nursery: trio.Nursery | None = None
        #: Cancels the whole exchange (disabled, or restarted with other settings).
        self.cancel_scope = trio.CancelScope()
        self._ids = itertools.count(1)
        #: Which symbols are stale, judged from the writer's update-ordered last-seen times.
        self.staleness = Staleness(name, daemon.writer.last_seen, daemon.config.health.stale_after)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.cancel_scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for symbol in self.wanted:
                    self.add(symbol)
                self.wanted.clear()
                task_status.started()
                await self._watch_staleness()

    async def _watch_staleness(self) -> None:
        """Check staleness every ``stale_after / 4`` (a timer, so the hot path pays nothing)."""
        stale_after = self.daemon.config.health.stale_after
        while True:
            self.check_staleness(trio.current_time())
            await trio.sleep(stale_after / 4)

    def check_staleness(self, now: float) -> None:
        """Mark stale symbols, log each change once, resubscribe all-stale live connections.

        A symbol with no update (nor subscription) for ``health.stale_after`` is stale.  When a
        connection's frames still arrive but it produced no ticker for ``stale_after``, the
        subscriptions are what went wrong: it resubscribes them, at most once per
        ``stale_after``.  A connection without any frame is the feed's watchdog's business (it
        reconnects).  The cost follows what is stale or changed, not the number of symbols
        (:mod:`tickerd.freshness`).
        """
        health = self.health
        name = health.name
        verdict = self.staleness.check(now, self.feeds, health.stale, health.rejected)
        stale_after = self.staleness.stale_after
        for symbol in verdict.stale:
            logger.warning("stale: no update for {s:g} s", s=stale_after, exchange=name, symbol=symbol)
        for symbol in verdict.fresh:
            logger.info("fresh again", exchange=name, symbol=symbol)
        health.update_stale(verdict.stale, [*verdict.fresh, *verdict.left])
        for feed in verdict.resubscribe:
            logger.warning(
                "frames arrive but none of {n} symbols updated for {s:g} s: resubscribing",
                n=sum(s not in health.rejected for s in feed.symbols),
                s=stale_after,
                exchange=name,
                feed=feed.feed_id,
            )
            feed.resubscribe()

    def symbols(self) -> set[str]:
        """What this exchange subscribes, including symbols asked for before it runs."""
        return {s for feed in self.feeds for s in feed.symbols} | set(self.wanted)

    def feed_of(self, symbol: str) -> Feed | None:
        return next((feed for feed in self.feeds if symbol in feed.symbols), None)

    def add(self, symbol: str) -> None:
        if self.feed_of(symbol) is not None:
            return
        self.staleness.watch(symbol, trio.current_time())
        endpoints = {group: self.adapter.endpoint(self.url, symbol, group) for group in self.adapter.groups}
        room = self.settings.connection_limit(self.adapter) - self.adapter.channels(symbol)
        self.daemon.health_changes.fire(self.health.name)  # status shows the new set at once
        feed = next(
            (f for f in self.feeds if f.urls == endpoints and f.load <= room and not f.finished), None
        )
        if feed is not None:
            feed.add(symbol)
            return
        assert self.nursery is not None
        feed = Feed(
            self.adapter,
            self.url,
            [symbol],
            settings=self.daemon.config.feed,
            sink=self.daemon.writer.sink,
            health=self.health,
            feed_id=next(self._ids),
            engine=self.settings.engine,
            rest_url=self.settings.rest_url,
            pacer=self.daemon.pacer,
        )
        self.feeds.append(feed)
        self.nursery.start_soon(self._run_feed, feed)

    async def _run_feed(self, feed: Feed) -> None:
        try:
            await feed.run()
        finally:
            if feed in self.feeds and not feed.symbols:
                self.feeds.remove(feed)

    def remove(self, symbol: str, *, close_empty: bool = True) -> None:
        feed = self.feed_of(symbol)
        if feed is None:
            return
        feed.remove(symbol)
        self.staleness.unwatch(symbol)
        self.daemon.health_changes.fire(self.health.name)  # status shows the new set at once
        if close_empty and not feed.symbols:  # an empty connection has nothing left to do
            self.feeds.remove(feed)
            feed.cancel_scope.cancel()

    def update(self, symbols: set[str]) -> None:
        """Subscribe exactly ``symbols``: removals first (they make room on full
        connections), then additions, and only then close what is left empty, so swapping
        the one symbol of a connection keeps the connection."""
        if self.nursery is None:
            self.wanted = sorted(symbols)
            return
        running = self.symbols()
        for symbol in sorted(running - symbols):
            self.remove(symbol, close_empty=False)
        for symbol in sorted(symbols - running):
            self.add(symbol)
        for feed in [feed for feed in self.feeds if not feed.symbols]:
            self.feeds.remove(feed)
            feed.cancel_scope.cancel()

    def subscribed(self) -> list[str]:
        """The symbols of this exchange's connections, sorted."""
        return sorted(s for feed in self.feeds for s in feed.symbols)

    def snapshot(self) -> ExchangeSnapshot:
        """The exchange now.  A symbol without any ticker is ``waiting`` (not fresh) until the
        staleness check finds it ``stale_after`` old (counted from its subscription)."""
        health, symbols = self.health, self.subscribed()
        last_tick = self.daemon.writer.last_tick_times(health.name, symbols)
        stale = health.stale.intersection(symbols)  # not symbols removed since the last check
        return ExchangeSnapshot(
            state=health.reported_state(delivered=bool(last_tick)),
            connections=health.connections,
            reconnects=health.reconnects,
            last_error=health.last_error,
            last_error_ts=health.last_error_ts,
            rejected=dict(health.rejected),
            stale=tuple(sorted(stale)),
            symbols=tuple(symbols),
            feeds=len(self.feeds),
            frames=sum(feed.frame_count for feed in self.feeds),
            junk=sum(feed.junk_count for feed in self.feeds),
            last_tick=last_tick,
            waiting=tuple(
                s for s in symbols if s not in last_tick and s not in stale and s not in health.rejected
            ),
            crossed=sum(feed.crossed_count for feed in self.feeds),
        )


class TickerDaemon:
    """The handle of a running daemon: ``add``, ``remove``, ``health``."""

    def __init__(
        self,
        config: Config,
        nursery: trio.Nursery,
        writer: RedisWriter,
    ) -> None:
        self.config = config
        self.writer = writer
        #: One clock of the batch window for every feed: paced connections wake together.
        self.pacer = Pacer(config.feed.batch_window)
        self._nursery = nursery
        self._runners: dict[str, _ExchangeRunner] = {}
        #: Fired on every health state change: with the exchange's name (connected,
        #: reconnecting, failed, rejected, stale or first-ticked symbols, a symbol subscribed
        #: or unsubscribed; started or stopped), or ``None``
        #: when the subscription source's state changed, or a fleet's membership store went
        #: away or came back.
        self.health_changes: Broadcast[str | None] = Broadcast()
        #: Where the subscriptions come from (TOML, PostgreSQL, fullon); set by ``serve``.
        self.source: Source | None = None
        #: In a fleet, this member's share of the desired set (set by ``serve``), else ``None``.
        self.fleet: FleetSubscriptions | None = None
        #: Whether any exchange's connection was ever up (see :meth:`hint_if_offline`).
        self._connected_once = False
        writer.first_tickers.connect(self._first_tickers)

    def _exchange_changed(self, health: ExchangeHealth) -> None:
        if health.connections:
            self._connected_once = True
        self.health_changes.fire(health.name)

    def _first_tickers(self, exchanges: set[str]) -> None:
        """A symbol's first ticker turns it from waiting to fresh: a state change."""
        for name in exchanges & self._runners.keys():
            self.health_changes.fire(name)

    async def hint_if_offline(self) -> None:
        """Log once, :data:`OFFLINE_HINT_AFTER` seconds after start, when exchanges are
        configured and none has ever connected: each feed's own lines say why it cannot
        (``cannot resolve …``), this one says what it probably means and what runs anyway."""
        await trio.sleep(OFFLINE_HINT_AFTER)
        if self._runners and not self._connected_once:
            logger.warning(
                "no exchange has connected in {s:g} s: this machine may be offline "
                "(`tickerd demo` runs against local fake exchanges, without a network)",
                s=OFFLINE_HINT_AFTER,
            )

    def _source_changed(self, _: Source) -> None:
        self.health_changes.fire(None)

    def _fleet_store_changed(self, _: bool) -> None:
        self.health_changes.fire(None)

    async def health_changed(self) -> None:
        """Wait for the next health state change (status views, tests)."""
        await self.health_changes.wait()

    def _runner(self, exchange: str, settings: ExchangeConfig | None = None) -> _ExchangeRunner:
        runner = self._runners.get(exchange)
        if runner is None:
            if settings is None:
                settings = self.config.exchanges.get(exchange, ExchangeConfig())
            runner = _ExchangeRunner(self, exchange, settings)
            runner.health.changed.connect(self._exchange_changed)
            self._runners[exchange] = runner
        return runner

    async def _start_exchange(self, exchange: str, settings: ExchangeConfig | None = None) -> None:
        runner = self._runner(exchange, settings)
        runner.started = True
        await self._nursery.start(runner.run)

    def _stop_exchange(self, exchange: str) -> None:
        """Close every connection of ``exchange`` and forget it (it leaves health too)."""
        runner = self._runners.pop(exchange)
        runner.cancel_scope.cancel()
        self.health_changes.fire(exchange)

    async def apply(
        self, desired: Mapping[str, ExchangeConfig], *, keep: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Make the running set equal ``desired`` (exchange → its settings and symbols),
        touching only what differs.

        A symbol that leaves the running set is deleted from Redis, unless ``keep`` (exchange →
        symbols) lists it: a fleet member that hands a symbol to another member unsubscribes it
        and leaves its stored value to the new owner (:mod:`tickerd.fleet.share`).

        New symbols are subscribed and dropped ones unsubscribed on their own connections
        (every change of one call goes out in the same scheduler tick, so exchanges that take
        batched requests get one); an exchange that is no longer desired is stopped; one whose
        ``url``, ``rest_url`` or ``engine`` changed is restarted alone.  Nothing else reconnects.  Symbols
        are validated by the caller (the sources skip and report rows they cannot use).

        A ``url``, ``rest_url`` or ``engine`` left unset keeps the configured one (``[exchanges.NAME]``),
        else the exchange's own: ``apply({"kraken": ExchangeConfig(symbols=…)})`` changes the
        symbols, never where a relay or a fake configured for Kraken points.
        """
        desired = {name: self._with_configured(name, settings) for name, settings in desired.items()}

        def gone(name: str, symbols: set[str]) -> set[str]:
            return symbols if keep is None else symbols.difference(keep.get(name, ()))

        changes: list[str] = []
        for name in [n for n in self._runners if n not in desired]:
            written = self._runners[name].symbols() | self.writer.written_symbols(name)
            self._withdraw(name, gone(name, written))
            self._stop_exchange(name)
            changes.append(f"{name} stopped")
        start: dict[str, str] = {}
        for name, settings in desired.items():
            runner = self._runners.get(name)
            if runner is None:
                start[name] = "started"
                continue
            running, wanted = runner.symbols(), set(settings.symbols)
            self._withdraw(name, gone(name, running - wanted))
            before, after = runner.settings, settings
            if (before.url, before.rest_url, before.engine) != (after.url, after.rest_url, after.engine):
                self._stop_exchange(name)
                start[name] = "restarted (settings changed)"
            else:
                runner.update(wanted)
                if running != wanted:
                    diff = [f"+{s}" for s in sorted(wanted - running)] + [
                        f"-{s}" for s in sorted(running - wanted)
                    ]
                    changes.append(f"{name} {' '.join(diff)}")
        for name, verb in start.items():
            await self._start_exchange(name, desired[name])
            changes.append(f"{name} {verb} with {len(desired[name].symbols)} symbols")
        if changes:
            logger.info("subscriptions changed: {changes}", changes="; ".join(changes))

    def _with_configured(self, name: str, settings: ExchangeConfig) -> ExchangeConfig:
        """``settings`` with the configured ``url``, ``rest_url``, ``engine`` and
        ``symbols_per_connection``
        where it leaves them unset."""
        configured = self.config.exchanges.get(name, ExchangeConfig())
        return attrs.evolve(
            settings,
            url=settings.url or configured.url,
            rest_url=settings.rest_url or configured.rest_url,
            engine=settings.engine or configured.engine,
            symbols_per_connection=settings.symbols_per_connection or configured.symbols_per_connection,
        )

    def add(self, exchange: str, symbol: str) -> None:
        """Subscribe ``symbol`` on ``exchange`` now; idempotent; other connections untouched.

        Raises ``KeyError`` for an unknown exchange and ``ValueError`` for a symbol the
        exchange's adapter cannot use, before anything changes.
        """
        runner = self._runner(exchange)
        runner.adapter.check_symbol(symbol)
        if runner.nursery is not None:
            runner.add(symbol)
            return
        if symbol not in runner.wanted:
            runner.wanted.append(symbol)
        if not runner.started:
            runner.started = True
            self._nursery.start_soon(runner.run)

    def remove(self, exchange: str, symbol: str) -> None:
        """Cancel exactly this subscription and delete its stored value; a no-op if it is not
        subscribed."""
        runner = self._runners.get(exchange)
        if runner is None or symbol not in runner.symbols():
            return
        self._withdraw(exchange, [symbol])
        if runner.nursery is None:
            runner.wanted.remove(symbol)
        else:
            runner.remove(symbol)

    def _withdraw(self, exchange: str, symbols: Iterable[str]) -> None:
        """Delete the stored values of ``symbols``, which left the desired set: their removals
        go through the writer's channel, behind any of their tickers already queued, so such a
        ticker is dropped rather than written after the deletion."""
        removals = [self.writer.removal(exchange, symbol) for symbol in sorted(symbols)]
        try:
            self.writer.sink.send_nowait(removals)
        except trio.WouldBlock:  # the writer is behind: queue up behind the waiting tickers
            self._nursery.start_soon(self.writer.sink.send, removals)

    def symbols(self) -> dict[str, list[str]]:
        """The subscribed symbols of every exchange."""
        return {name: runner.subscribed() for name, runner in self._runners.items()}

    async def depart(self, deadline: float) -> None:
        """In a fleet, leave it before stopping: the record says so, the other members take
        this one's symbols over, and it collects them until they delivered them or ``deadline``
        (trio time) comes, the writer's final flush included by then.  Outside a fleet: nothing."""
        if self.fleet is not None:
            self.writer.finish_by = deadline
            await self.fleet.depart(deadline - min(DEPART_FLUSH, (deadline - trio.current_time()) / 2))

    def health(self) -> DaemonHealth:
        """Every exchange's state, connections, symbols, errors; the writer's; the
        subscription source's."""
        writer = self.writer
        return DaemonHealth(
            exchanges={name: runner.snapshot() for name, runner in self._runners.items()},
            writer=WriterStats(
                written=writer.written,
                batches=writer.batches,
                coalesced=writer.coalesced,
                rejected=writer.rejected,
                redis_up=writer.redis_up,
                reason=writer.reason,
            ),
            source=None if self.source is None else self.source.snapshot(),
            fleet=None if self.fleet is None else self.fleet.snapshot(),
        )


async def serve(
    config: Config, *, task_status: trio.TaskStatus[TickerDaemon] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the daemon for ``config`` until cancelled; ``started`` reports the handle.

    It first takes the lease on its prefix (:mod:`tickerd.lease`; :class:`~tickerd.lease.LeaseHeld`
    when another daemon, or another fleet, owns it), before any exchange connection or Redis
    write, and gives it back last, after the writer's final flush (a fleet member only when it
    was the last member).  In a fleet, the member joins before the source's first set is applied,
    and waits for the members starting with it to join too (``Membership.settle``), so its first
    share is computed over them all.
    """
    fleet = config.fleet.name
    lease = PrefixLease(config.redis.address, config.layout, config.redis.lease_expiry, fleet=fleet)
    membership: Membership | None = None
    remaining: int | None = 0
    try:
        await lease.acquire()
        layout = config.layout
        if fleet is not None:
            layout = attrs.evolve(layout, instance=config.fleet.instance_id)
            membership = Membership(config.redis.address, layout, config.fleet)
        await _serve(config, layout, lease, membership, task_status)
    finally:
        if membership is not None:
            remaining = await membership.close(min(trio.current_time() + RELEASE_TIMEOUT, lease.release_by))
        await lease.release(shared=remaining != 0)


async def _serve(
    config: Config,
    layout: RedisLayout,
    lease: PrefixLease,
    membership: Membership | None,
    task_status: trio.TaskStatus[TickerDaemon],
) -> None:
    writer = RedisWriter(
        config.redis.address, layout, grace=config.shutdown_grace, window=config.feed.batch_window
    )

    def shutting_down() -> None:
        # The shutdown grace bounds all that follows the signal, the lease's release included.
        lease.release_by = min(trio.current_time() + config.shutdown_grace, writer.finish_by)

    writer.at_close(shutting_down)
    async with trio.open_nursery() as root:
        root.start_soon(lease.keep)
        root.start_soon(writer.run)
        async with trio.open_nursery() as exchanges_nursery:
            daemon = TickerDaemon(config, exchanges_nursery, writer)
            daemon.source = sources.for_config(config)
            daemon.source.changed.connect(daemon._source_changed)
            subscriptions: Subscriptions = daemon
            if membership is not None:
                share = FleetSubscriptions(daemon, membership, config.fleet, writer.last_seen)
                membership.collected = share.collected
                membership.store_changed.connect(daemon._fleet_store_changed)
                await membership.join()
                root.start_soon(membership.run)
                root.start_soon(share.run)
                await membership.settle()  # the members starting with this one join meanwhile
                daemon.fleet = subscriptions = share
            await root.start(daemon.source.run, subscriptions)
            logger.info(
                "tickerd running ({source}): {exchanges}",
                source=daemon.source.kind,
                exchanges=", ".join(f"{n} ({len(s)})" for n, s in daemon.symbols().items())
                or "no exchanges yet",
            )
            per = config.process_records
            processes = None if per == "off" else ProcessRecords(writer, layout, per)
            monitor = HealthMonitor(daemon, writer, config.health, layout, lease, processes)
            root.start_soon(monitor.run)
            root.start_soon(daemon.hint_if_offline)
            task_status.started(daemon)
            await trio.sleep_forever()
