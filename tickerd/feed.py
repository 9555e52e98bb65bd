"""The I/O loop every exchange shares: connect, subscribe, read, keep alive, heal.

A :class:`Feed` keeps one set of symbols subscribed.  Most exchanges serve a symbol's streams on
one websocket; one that splits them over several URLs declares endpoint groups
(:attr:`Exchange.groups <tickerd.exchanges.base.Exchange.groups>`), and the feed then runs one
:class:`_Lane` per group, each keeping its own websocket at a time (two, briefly, while a
connection is rotated), connecting, backing off and rotating on its own.  Each websocket is a
:class:`_Session`.  The decoders of every session of a feed share the adapter's merged state,
so each group's frames update the same latest record.  The loop knows nothing of any exchange's
message format: it moves frames between the transport and the adapter's decoders and acts on
the decoders' events.

Healing, in one place:

* no frame for ``silence_timeout`` (including a connection that never sends a first one) → the
  session ends and the feed reconnects;
* reconnects back off exponentially with jitter, capped; the backoff resets only after a
  connection delivered tickers for ``healthy_after`` seconds, so a connect-then-drop loop, and
  a connection that is accepted but never delivers (silent after its acks, pings only, every
  symbol refused), stay throttled;
* an exchange that hands out its endpoint per connection (KuCoin's token call:
  :meth:`Exchange.resolve <tickerd.exchanges.base.Exchange.resolve>`) is asked before every
  connect, and its failing is a connection failure like any other (backoff, health, logs);
* a forced lifetime (Binance's 24 h) or a reconnect request from the exchange is handled
  make-before-break: the replacement is opened and subscribed before the old one is closed.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import operator
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from tickerd import transport
from tickerd.config import FeedSettings
from tickerd.exchanges.base import (
    Exchange,
    Keepalive,
    ReconnectRequested,
    Rejected,
    Reply,
    ResolveError,
    Subscribed,
)
from tickerd.health import CONNECTED, CONNECTING, FAILED, RECONNECTING, ExchangeHealth
from tickerd.logs import logger
from tickerd.model import Ticker
from tickerd.pacing import Pacer

#: Ticks of ``feed.batch_window`` a paced connection keeps looking for frames at the shared tick
#: before it waits for its socket again (a quarter of a second at a 10 ms window): long enough
#: to carry a connection that gets a frame every few ticks, short enough that a quiet daemon
#: sleeps.
POLL_TICKS = 25
#: Seconds before an unchanged refusal of a symbol is logged again: it is refused anew on every
#: reconnect, and one line per symbol says it all.
REJECTION_LOG_INTERVAL = 600.0


class _Session:
    """One websocket: subscribe, read, keep alive, watch for silence."""

    def __init__(self, lane: _Lane) -> None:
        feed = lane.feed
        self.feed = feed
        self.lane = lane
        self.frames = 0
        self.junk = 0
        #: Whether the websocket was opened (a failure after it lost a connection; before it,
        #: there was none to lose).
        self.opened = False
        #: When the first ticker came (trio clock), ``None`` before it.
        self.first_ticker_at: float | None = None
        #: How long no frame had arrived when the watchdog ended the session (0 otherwise).
        self.silent_for = 0.0
        #: Why the session ended (``None`` while it runs).
        self.outcome: str | None = None
        #: Set when the feed should open a successor: the session ended or wants rotation.
        self.needs_successor = trio.Event()
        self.done = trio.Event()
        self._ready = trio.Event()
        self._cancel = trio.CancelScope()
        #: Frames to send; ``None`` marks where the batched live changes go out.
        self._outbox_send, self._outbox = trio.open_memory_channel[str | None](math.inf)
        self._changes: list[tuple[bool, str]] = []
        self._decoder = feed.adapter.decoder(feed.symbols, lane.group, feed.merged)
        self._unresolved = set(feed.symbols)
        if not self._unresolved:
            self._ready.set()

    @property
    def crossed(self) -> int:
        """Tickers with a crossed book so far (the decoder counts them)."""
        return self._decoder.crossed

    def subscribe(self, symbols: list[str]) -> None:
        """Subscribe on the live connection (no reconnect)."""
        self._change(True, symbols)

    def unsubscribe(self, symbols: list[str]) -> None:
        """Unsubscribe on the live connection; frames for them are dropped from now on."""
        for symbol in symbols:
            self._decoder.untrack(symbol)
        self._change(False, symbols)

    def _change(self, subscribe: bool, symbols: list[str]) -> None:
        """Queue a live change; changes made in the same scheduler tick (a config reload
        adding fifty symbols) go out as one batched request, which matters where exchanges
        count requests (OKX: 480 an hour per connection)."""
        if not self._changes:
            self._outbox_send.send_nowait(None)
        self._changes.extend((subscribe, symbol) for symbol in symbols)

    def _change_frames(self) -> list[str]:
        changes, self._changes = self._changes, []
        frames: list[str] = []
        for subscribe, group in itertools.groupby(changes, key=operator.itemgetter(0)):
            symbols = [symbol for _, symbol in group]
            frames += self._decoder.subscribe(symbols) if subscribe else self._decoder.unsubscribe(symbols)
        return frames

    def cancel(self) -> None:
        self._cancel.cancel()

    def _queue(self, frames: Iterable[str]) -> None:
        for frame in frames:
            self._outbox_send.send_nowait(frame)

    def delivered_for(self, now: float) -> float:
        """Seconds from the first ticker to the last sign of life (``now``, less the silence
        that ended the session); 0 without a ticker.  This, not the connection's age, is what
        makes a connection healthy: one that is accepted and then delivers nothing must not
        reset the backoff."""
        if self.first_ticker_at is None:
            return 0.0
        return max(0.0, now - self.silent_for - self.first_ticker_at)

    def _end(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.needs_successor.set()
        self._cancel.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resolve where to connect (:meth:`Exchange.resolve`), connect and subscribe; report
        started once the subscriptions are confirmed.

        "Confirmed" means every symbol was acknowledged or refused (or ``ready_timeout``
        passed): the first ticker is not enough, because a rotation cancels the old
        connection as soon as this one is started, and symbols still being subscribed
        would miss updates in between.

        Before ``started`` every failure is raised (``nursery.start`` sees it); after it, the
        failure is recorded in :attr:`outcome` so that the feed, not its nursery, handles it.
        """
        feed = self.feed
        started = False
        try:
            with self._cancel:
                resolved = await feed.adapter.resolve(self.lane.url, self.lane.group, feed.rest_url)
                limit = min(feed.settings.silence_timeout, resolved.silence_timeout or math.inf)
                ssl_context = (
                    self.lane.ssl_context
                    if resolved.url == self.lane.url
                    else transport.ssl_context_for(resolved.url, feed.settings.ca_file)
                )
                async with (
                    transport.connect(resolved.url, engine=feed.engine, ssl_context=ssl_context) as conn,
                    trio.open_nursery() as nursery,
                ):
                    self.opened = True
                    nursery.start_soon(self._until_it_fails, self._sender, conn)
                    nursery.start_soon(self._until_it_fails, self._reader, conn)
                    nursery.start_soon(self._watchdog, conn, limit)
                    if resolved.keepalive is not None:
                        nursery.start_soon(self._keepalive, resolved.keepalive)
                    if feed.max_lifetime is not None:
                        nursery.start_soon(self._lifetime, feed.max_lifetime)
                    self._queue(self._decoder.subscribe(sorted(feed.symbols)))
                    feed.live.add(self)  # from here on, live adds/removes reach this session
                    with trio.move_on_after(feed.settings.ready_timeout):
                        await self._ready.wait()
                    started = True
                    task_status.started()
        except (transport.TransportError, ResolveError) as exc:  # resolving, connecting or closing failed
            self._end(str(exc))
        finally:
            feed.live.discard(self)
            feed.frames += self.frames
            feed.junk += self.junk
            feed.crossed += self.crossed
            self.needs_successor.set()
            self.done.set()
        if not started:
            raise transport.TransportError(self.outcome or "connection closed before it was ready")

    async def _until_it_fails(
        self, work: Callable[[transport.Connection], Awaitable[None]], conn: transport.Connection
    ) -> None:
        """Run ``work`` (the sender, the reader); the connection failing ends the session
        with the transport's reason, as the watchdog ends it, instead of failing the nursery
        (which would wrap the error in an exception group)."""
        try:
            await work(conn)
        except transport.TransportError as exc:
            self._end(str(exc))

    async def _sender(self, conn: transport.Connection) -> None:
        """Send queued frames in order, no faster than the exchange's inbound limit allows, and
        none before the exchange's ``connect_delay`` passed."""
        interval = self.feed.adapter.send_interval
        next_send = trio.current_time() + self.feed.adapter.connect_delay
        async for item in self._outbox:
            for frame in self._change_frames() if item is None else [item]:
                await trio.sleep_until(next_send)
                next_send = trio.current_time() + interval
                await conn.send(frame)

    async def _reader(self, conn: transport.Connection) -> None:
        """Decode every frame; hand the tickers of one socket read to the writer as one item
        (a burst of frames costs the channel and the writer one hand-off, not one a frame).

        After a read that delivered tickers and left nothing waiting (:meth:`Connection.ready
        <tickerd.transport.Connection.ready>`), the reader waits for the next tick of
        ``feed.batch_window`` before it reads again: what a steady feed sends meanwhile is then
        read, decoded and written in one wake-up of the process, which costs far more than the
        frames themselves at moderate rates.  With more waiting it reads on (it is behind, and
        its reads grow by themselves).  Every paced connection wakes at the same tick
        (:mod:`tickerd.pacing`).  At a tick with nothing to read it waits for the next tick
        rather than for the socket, for up to :data:`POLL_TICKS` ticks: a connection that gets
        a frame every few ticks then costs no wake-up of its own, only a look at its socket in
        the shared one.  After that it is quiet, blocked in its read: its next frame is read at
        once.
        """
        feed = self.feed
        decode = self._decoder.decode
        decoder = self._decoder
        sink = feed.sink
        pace = feed.pacer.tick if feed.pacer.window else None
        tickers: list[Ticker] = []
        polls = 0  # empty ticks left before the reader waits for the socket instead
        while True:
            if polls and not conn.ready():
                polls -= 1
                assert pace is not None
                await pace()
                continue
            frame = await conn.receive()
            self.frames += 1
            tickers += decode(frame)
            if decoder.events:
                self._handle_events()
            if decoder.junk != self.junk:
                self.junk = decoder.junk
                logger.debug("junk frame ignored: {reason}", reason=decoder.junk_reason)
            if tickers and not conn.buffered:
                feed.last_ticker_at = trio.current_time()  # per read, for the staleness check
                if self.first_ticker_at is None:
                    self.first_ticker_at = feed.last_ticker_at
                try:
                    sink.send_nowait(tickers)
                except trio.WouldBlock:  # the writer's drain is behind: wait for it (backpressure)
                    await sink.send(tickers)
                tickers = []
                if pace is not None and not conn.ready():  # caught up: batch what comes next
                    await pace()
                    polls = POLL_TICKS

    def _handle_events(self) -> None:
        feed = self.feed
        events, self._decoder.events = self._decoder.events, []
        for event in events:
            if isinstance(event, Subscribed):
                feed.health.accept(event.symbol)
                self._resolved(event.symbol)
            elif isinstance(event, Rejected):
                feed.log_rejection(event.symbol, event.reason)
                feed.health.reject(event.symbol, event.reason)
                self._resolved(event.symbol)
            elif isinstance(event, Reply):
                self._queue([event.frame])
            elif isinstance(event, ReconnectRequested):
                logger.info("exchange asked for a reconnect: {reason}", reason=event.reason)
                self.needs_successor.set()

    def _resolved(self, symbol: str) -> None:
        self._unresolved.discard(symbol)
        if not self._unresolved:
            self._ready.set()

    async def _watchdog(self, conn: transport.Connection, limit: float) -> None:
        """End the session when no frame arrived for ``limit`` seconds (``silence_timeout``,
        or the exchange's shorter bound: :attr:`Resolved.silence_timeout
        <tickerd.exchanges.base.Resolved.silence_timeout>`), protocol pings included: a server
        that pings a quiet subscription is alive (Binance sends nothing else while no price
        moves), one that stopped answering is not.

        It samples the transport's read counter instead of timing every frame, so the read
        loop pays nothing per frame for it.
        """
        seen = 0
        quiet_since = trio.current_time()
        while True:
            await trio.sleep(limit / 4)
            if conn.reads != seen:
                seen = conn.reads
                quiet_since = trio.current_time()
            elif trio.current_time() - quiet_since >= limit:
                self.silent_for = trio.current_time() - quiet_since
                self._end(f"no frame for {limit:g} s")
                return

    async def _keepalive(self, keepalive: Keepalive) -> None:
        while True:
            await trio.sleep(keepalive.interval)
            self._queue([keepalive.frame])

    async def _lifetime(self, lifetime: float) -> None:
        await trio.sleep(lifetime)
        logger.info("rotating connection before its forced lifetime ends")
        self.needs_successor.set()


class _Lane:
    """One endpoint group of a feed: its websocket, one session at a time (two while one is
    rotated), reconnecting forever or until ``max_retries`` consecutive failures."""

    def __init__(self, feed: Feed, group: str, url: str) -> None:
        self.feed = feed
        self.group = group
        self.url = url
        self.ssl_context = transport.ssl_context_for(url, feed.settings.ca_file)
        #: This connection's key in the exchange's health (its state among the others').
        self.key = (feed.feed_id, group)

    def _state(self, state: str) -> None:
        self.feed.health.set_feed_state(self.key, state)

    async def run(self) -> None:
        """Run sessions one after another until cancelled; out of retries, give the whole feed
        up (its symbols cannot be complete without this group's streams)."""
        feed = self.feed
        failures = 0
        self._state(CONNECTING)
        with logger.contextualize(endpoint=self.group) if self.group else contextlib.nullcontext():
            async with trio.open_nursery() as nursery:
                current: _Session | None = None
                while True:
                    session = _Session(self)
                    try:
                        await nursery.start(session.run)
                    except transport.TransportError as exc:
                        reason = str(exc)
                    else:
                        if current is not None:
                            current.cancel()  # make-before-break: the successor is live
                        current = session
                        self._state(CONNECTED)
                        logger.info("connected, {n} symbols", n=len(feed.symbols))
                        await session.needs_successor.wait()
                        if session.outcome is None:
                            failures = 0
                            continue  # rotation: open the successor while this one runs
                        reason = session.outcome
                        if session.delivered_for(trio.current_time()) >= feed.settings.healthy_after:
                            failures = 0
                    failures += 1
                    feed.health.reconnects += 1
                    feed.health.error(reason)
                    if feed.settings.max_retries and failures >= feed.settings.max_retries:
                        feed.finished = True  # before the state change wakes anyone who would add here
                        self._state(FAILED)
                        logger.error(
                            "giving up after {n} consecutive failures: {reason}", n=failures, reason=reason
                        )
                        feed.cancel_scope.cancel()
                        return
                    delay = feed.settings.backoff.delay(failures, feed.rng)
                    self._state(RECONNECTING)
                    logger.warning(
                        "connection lost ({reason}); reconnecting in {delay:.1f} s"
                        if session.opened
                        else "no connection ({reason}); retrying in {delay:.1f} s",
                        reason=reason,
                        delay=delay,
                    )
                    await trio.sleep(delay)


class Feed:
    """Keeps ``symbols`` of one exchange endpoint subscribed: one :class:`_Lane` per endpoint
    group of the adapter, reconnecting forever (or until a lane runs out of ``max_retries``)."""

    def __init__(
        self,
        adapter: Exchange,
        url: str,
        symbols: Iterable[str],
        *,
        settings: FeedSettings,
        sink: trio.MemorySendChannel[Sequence[Ticker]],
        health: ExchangeHealth,
        feed_id: int,
        engine: str | None = None,
        rest_url: str | None = None,
        rng: random.Random | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.adapter = adapter
        self.symbols: set[str] = set(symbols)
        #: The share of the connection limit the symbols take (:meth:`Exchange.channels`).
        self.load = sum(adapter.channels(symbol) for symbol in self.symbols)
        self.settings = settings
        self.sink = sink
        self.health = health
        self.feed_id = feed_id
        self.engine = engine or settings.engine
        #: Where the adapter asks for its endpoint before each connect (:meth:`Exchange.resolve`).
        self.rest_url = rest_url or adapter.rest_url
        #: The batch window's ticks, shared with the daemon's other feeds (:mod:`tickerd.pacing`).
        self.pacer = pacer or Pacer(settings.batch_window)
        #: Seconds after which a connection is rotated: the configured or the exchange's limit.
        lifetimes = [t for t in (settings.max_lifetime, adapter.max_lifetime) if t is not None]
        self.max_lifetime = min(lifetimes, default=None)
        #: What the decoders of every group and every reconnect share (the merged records).
        self.merged = adapter.merged_state()
        #: One lane per endpoint group, at the URL the adapter gives for the feed's symbols
        #: (``url`` is where the exchange is: configured, or the adapter's own).
        first = min(self.symbols, default="")
        self.lanes = [_Lane(self, group, adapter.endpoint(url, first, group)) for group in adapter.groups]
        #: group → URL: feeds with the same endpoints can take each other's symbols.
        self.urls = {lane.group: lane.url for lane in self.lanes}
        self.frames = 0
        self.junk = 0
        self.crossed = 0
        #: When a read last brought tickers (trio clock, any session), ``None`` before one.
        self.last_ticker_at: float | None = None
        #: True once ``run`` returned (cancelled, or out of retries): it takes no new symbols.
        self.finished = False
        self.rng = rng or random.Random()
        #: Sessions that take live subscription changes (two per lane during a rotation).
        self.live: set[_Session] = set()
        self.cancel_scope = trio.CancelScope()
        #: symbol → (reason, when) of its last logged refusal (see :meth:`log_rejection`).
        self._rejections_logged: dict[str, tuple[str, float]] = {}

    @property
    def frame_count(self) -> int:
        """Frames received by every session so far, live ones included."""
        return self.frames + sum(session.frames for session in self.live)

    @property
    def junk_count(self) -> int:
        return self.junk + sum(session.junk for session in self.live)

    @property
    def crossed_count(self) -> int:
        return self.crossed + sum(session.crossed for session in self.live)

    def resubscribe(self) -> None:
        """Unsubscribe and subscribe every symbol again on the live connection.

        For a connection whose frames still arrive while none of its symbols updates: an
        exchange that silently dropped the subscriptions gets them back without a reconnect.
        """
        symbols = sorted(self.symbols)
        for session in self.live:
            session.unsubscribe(symbols)
            session.subscribe(symbols)

    def add(self, symbol: str) -> None:
        """Subscribe ``symbol`` on the live connection; idempotent."""
        if symbol in self.symbols:
            return
        self.symbols.add(symbol)
        self.load += self.adapter.channels(symbol)
        for session in self.live:
            session.subscribe([symbol])

    def remove(self, symbol: str) -> None:
        """Unsubscribe exactly ``symbol``; the connection stays up for the others."""
        if symbol not in self.symbols:
            return
        self.symbols.discard(symbol)
        self.load -= self.adapter.channels(symbol)
        self.health.accept(symbol)
        self._rejections_logged.pop(symbol, None)
        for session in self.live:
            session.unsubscribe([symbol])

    def log_rejection(self, symbol: str, reason: str) -> None:
        """Log a refused symbol once, again only when the reason changes or after
        :data:`REJECTION_LOG_INTERVAL`: every reconnect is refused the same way."""
        now = trio.current_time()
        logged = self._rejections_logged.get(symbol)
        if logged is None or logged[0] != reason or now - logged[1] >= REJECTION_LOG_INTERVAL:
            self._rejections_logged[symbol] = (reason, now)
            logger.warning("symbol rejected: {reason}", reason=reason, symbol=symbol)

    async def run(self) -> None:
        """Run every lane until cancelled or one is out of retries.

        Its log lines, and those of its sessions' tasks (which inherit the context), name the
        exchange and the connection.
        """
        try:
            with self.cancel_scope, logger.contextualize(exchange=self.adapter.name, feed=self.feed_id):
                async with trio.open_nursery() as nursery:
                    for lane in self.lanes:
                        nursery.start_soon(lane.run)
        finally:
            self.finished = True
            for lane in self.lanes:
                if self.health.feed_states.get(lane.key) != FAILED:
                    self.health.drop_feed(lane.key)
