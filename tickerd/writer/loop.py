"""The coalescing loop: the one task that decides what reaches Redis, and when.

Feeds send the tickers of each socket read, as one item, into the writer's bounded memory
channel (:attr:`RedisWriter.sink`); the writer's drain task files them continuously in a dict
keyed by (exchange, symbol), so a burst is absorbed by *coalescing* (memory bounded by the
number of symbols and the channel's :data:`CHANNEL_SIZE` items, not by the burst), and
whenever Redis is free the flush task writes the whole dict in one round trip over its own
connection (:mod:`tickerd.writer.connection`), as the commands the layout
(:mod:`tickerd.layout`) builds.  The drain task goes on filing while a round trip is in flight
or Redis is away, so the feeds wait only if it falls :data:`CHANNEL_SIZE` reads behind.  If
Redis goes away, the batch goes back under any newer values and is retried with backoff:
nothing latest is lost.  A failed attempt leaves nothing behind (its encoded commands go with
it), so an outage costs memory for one latest value per symbol, however long it lasts.

A symbol that leaves the desired set travels the same way: the daemon sends its
:class:`~tickerd.model.Removal` through the channel, behind any of its tickers still queued,
and it replaces the symbol's pending value like a newer ticker would, so the value is never
written after its field was deleted (``HDEL``).

Health records (:mod:`tickerd.monitor`) travel through the same task, so Redis has one writer;
they are rare (a few a minute) and go out with the next batch, after its tickers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import redis
import trio
from loguru import logger
from redis.exceptions import NoScriptError

from tickerd import monotonic, topology
from tickerd.backoff import Backoff
from tickerd.broadcast import Broadcast
from tickerd.freshness import LastSeen
from tickerd.layout import Command, RedisLayout
from tickerd.model import Removal, Ticker
from tickerd.redact import redact
from tickerd.redis_errors import refusal
from tickerd.writer.cluster import ClusterConnection
from tickerd.writer.connection import Connection, RedisConnection

Key = tuple[str, str]
#: What the channel carries and a batch holds per (exchange, symbol): its latest ticker, or
#: its removal.
Item = Ticker | Removal
#: A written batch and the seconds from its sending to its replies being read (what metrics
#: observe; the replies are read with the next batch, or after :data:`CONFIRM_AFTER`).
Written = tuple[dict[Key, Item], float]
#: A queued record: by key, or by (hash key, field) for a field of a shared hash.
RecordKey = str | tuple[str, str]

#: Items (the tickers of one socket read, or removals) the feeds may queue ahead of the drain
#: task before they wait (:attr:`RedisWriter.sink`).
CHANNEL_SIZE = 4096
#: While Redis is unreachable or refuses tickerd: retry soon (a restart is often quick), then
#: every 2 s (a refusal too: a rotated password may be put right at any moment).  No jitter:
#: there is one writer per daemon, nothing to spread out.
RETRY = Backoff(first=0.05, cap=2.0, jitter=False)
#: Seconds after which the replies of the batch in flight are read if no newer batch came to
#: go out first (a steady feed has them read as the next batch goes out, at no cost): at least
#: this, else twice the time since the batch before (up to :data:`CONFIRM_MAX`), and with a
#: batch window at least two windows.  A timer that expired between every two batches of a
#: steady feed would cost a wake-up of its own per batch: at 200 batches a second, 5 ms did.
CONFIRM_AFTER = 0.005
#: Seconds the wait for a newer batch may last at most, however slow the feed: how late the
#: failure of a last batch before a quiet spell can be known (and its replies counted).
CONFIRM_MAX = 0.05


def connection(url: str, layout: RedisLayout) -> Connection:
    """The writer's connection for ``url``: its own RESP connection to one server or to the
    master the Sentinels name, redis-py's cluster pipeline for a cluster
    (:mod:`tickerd.writer.cluster`)."""
    if topology.parse(url).kind == "cluster":
        return ClusterConnection(url, scripts=layout.scripts)
    return RedisConnection(url, scripts=layout.scripts)


class RedisWriter:
    """Coalesce, pipeline, retry.  ``run`` is the task; counters are for health and metrics."""

    def __init__(self, url: str, layout: RedisLayout, *, grace: float = 5.0, window: float = 0.0) -> None:
        self._redis = connection(url, layout)
        self.layout = layout
        self._grace = grace
        #: Trio time by which the final flush ends even within its grace: a fleet member's
        #: departure spends part of the shutdown grace before the writer stops.
        self.finish_by = math.inf
        #: ``feed.batch_window``: batches go out at least half of it apart (:meth:`_flush_forever`).
        self._window = window
        #: The shortest wait for a newer batch before the replies are read (see CONFIRM_AFTER).
        self._confirm_floor = max(CONFIRM_AFTER, 2 * window)
        self._last_send = -math.inf
        #: Seconds between the last two batches sent.
        self._send_interval = math.inf
        #: Where the feeds send the tickers of each socket read (one item), and the daemon
        #: removals: drained into :attr:`_pending` by :meth:`_drain`.
        self.sink, self._receive = trio.open_memory_channel[Sequence[Item]](CHANNEL_SIZE)
        self._pending: dict[Key, Item] = {}
        #: Taken for Redis and not written yet: a batch that failed stays here (newer values
        #: replace what it holds) until a retry writes it.  One entry per key, and the only
        #: copy of the batch while Redis is away.
        self._batch: dict[Key, Item] = {}
        #: Removals handed out and not yet taken into a batch, by key.
        self._removals: dict[Key, Removal] = {}
        #: Latest values (and removals) still unwritten when the writer stopped: 0 unless the
        #: shutdown grace ran out.
        self.unwritten = 0
        self._wakeup = trio.Event()
        self._flushed = Broadcast[None]()
        self._redis_changed = Broadcast[bool]()
        self.written = 0
        self.batches = 0
        self.coalesced = 0
        #: Tickers the monotonic write (:attr:`RedisLayout.monotonic`) did not write because the
        #: stored value was as new (another instance's): counted in :attr:`written` too.
        self.rejected = 0
        self.redis_up = True
        #: Why Redis takes no writes (it refuses tickerd, or cannot be reached); ``None`` while
        #: it does.
        self.reason: str | None = None
        #: Whether the failure logged last was a refusal (an ERROR), so each kind is logged
        #: once however often the retry fails.
        self._refused = False
        self._down_since = 0.0
        self._reconnects_seen = 0
        #: Fired after a round trip that needed a new connection: the server may be a restarted
        #: one that lost everything, so the monitor writes every health record again.
        self.reconnected = Broadcast[None]()
        #: (exchange, symbol) → trio time of the latest batch that held its ticker, oldest
        #: first: taken once per key per coalesced batch, so staleness costs the hot path
        #: nothing per frame, and the staleness check reads only the oldest.
        self.last_seen = LastSeen()
        #: Fired, once the batch is written (counters included), with the exchanges of a batch
        #: that held some symbol's first ticker: health's "waiting" changed.
        self.first_tickers = Broadcast[set[str]]()
        self._first_ticker_taken = False
        #: Fired after each written batch of tickers (metrics connect to it).
        self.batch_written = Broadcast[Written]()
        self.records_written = 0
        #: Queued record commands, the newest per key (or per hash field) winning.
        self._records: dict[RecordKey, Command] = {}
        #: The batch sent and not confirmed yet (its tickers, its records, when it was sent).
        self._inflight: tuple[dict[Key, Item], dict[RecordKey, Command], float] | None = None
        #: Consecutive failed attempts (the retry backoff's step).
        self._failures = 0
        self._closing: list[Callable[[], None]] = []
        self._final_records: list[Callable[[], None]] = []

    async def run(self) -> None:
        """Write until cancelled, then flush what is held within the grace period.

        The grace period is a hard bound whatever Redis does: a write still hanging at its
        end is abandoned (the connection dropped), and :attr:`unwritten` counts what it held.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain)
                await self._flush_forever()
        finally:
            for callback in self._closing:
                callback()
            with trio.move_on_at(min(trio.current_time() + self._grace, self.finish_by), shield=True):
                self._drain_nowait()
                await self._flush_until_done()
                for callback in self._final_records:
                    callback()
                await self._flush_until_done()
            self._redis.close()
            self.unwritten = len(self._batch.keys() | self._pending.keys())
            if self.unwritten:
                logger.error(
                    "shutdown: {n} latest values not written to Redis within the grace period ({s:g} s)",
                    n=self.unwritten,
                    s=self._grace,
                )

    async def _drain(self) -> None:
        """Move what the feeds send into the pending dict as it comes, while the flush task
        writes: one wake-up takes everything queued by then, without a checkpoint per item."""
        receive = self._receive
        while True:
            self._file(await receive.receive())
            self._drain_nowait()
            self._wakeup.set()

    def _drain_nowait(self) -> None:
        receive = self._receive
        try:
            while True:
                self._file(receive.receive_nowait())
        except trio.WouldBlock:
            return

    def _file(self, items: Sequence[Item]) -> None:
        """Take tickers (the newest per symbol wins) and removals for the next batch."""
        pending = self._pending
        known = len(pending)
        for item in items:
            pending[item.exchange, item.symbol] = item
        self.coalesced += len(items) - (len(pending) - known)

    def _take(self) -> None:
        """Move the pending values into the batch that goes out next.

        After a failed attempt the newer values replace what the batch held, in a new dict:
        the abandoned attempt of a shutdown may still be reading the old one in the thread.
        """
        pending, self._pending = self._pending, {}
        self._wakeup = trio.Event()
        if pending:
            self._first_ticker_taken |= self.last_seen.taken(pending, trio.current_time())
            if self._removals:
                self._settle_removals(pending)
            self._batch = self._batch | pending if self._batch else pending

    def removal(self, exchange: str, symbol: str) -> Removal:
        """The removal of ``symbol``'s stored value, for the caller to send to :attr:`sink` (it
        replaces the symbol's pending ticker, if any).  Once it is taken for Redis, the symbol's
        per-symbol state (its last-seen time) is pruned."""
        removal = self._removals[exchange, symbol] = Removal(exchange, symbol)
        return removal

    def _settle_removals(self, pending: dict[Key, Item]) -> None:
        """Forget the last-seen times of the symbols whose removals were just taken.  (A
        removal that a re-added symbol's newer ticker replaced stays listed until the symbol
        is removed again: the symbol is live, and its last-seen time with it.)"""
        for key, removal in list(self._removals.items()):
            if pending.get(key) is removal:
                del self._removals[key]
                self.last_seen.forget(key)

    def written_symbols(self, exchange: str) -> set[str]:
        """The symbols of ``exchange`` whose values this writer took for Redis (and did not
        remove since): what to remove when the exchange goes."""
        return set(self.last_seen.of(exchange))

    def last_tick_times(self, exchange: str, symbols: list[str]) -> dict[str, float]:
        """Epoch time of each symbol's latest ticker (symbols without one are left out)."""
        return self.last_seen.epoch_times(exchange, symbols)

    def put_record(self, key: str, value: bytes | None, ttl: int) -> None:
        """Queue a health record: ``SET key value EX ttl``, or ``DEL key`` for ``None``.

        The newest record per key wins, like tickers, so a burst of state changes costs
        one write per key.
        """
        self._records[key] = self.layout.record_command(key, value, ttl)
        self._wakeup.set()

    def put_field(self, key: str, field: str, value: str | None, *, owner: str | None = None) -> None:
        """Queue one field of a hash that other programs write to as well (fullon's process
        indexes): ``HSET``, or for ``None`` the field's deletion, only while it holds ``owner``
        if one is given (:meth:`~tickerd.layout.RedisLayout.field_command`).  The newest per
        field wins, like :meth:`put_record`, with which it is written."""
        self._records[key, field] = self.layout.field_command(key, field, value, owner=owner)
        self._wakeup.set()

    def at_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the writer stops, before its final flush: the last records
        (health marked stopped) queued there are written within the grace period."""
        self._closing.append(callback)

    def at_final_records(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the writer stops, once its final tickers are written and
        before its final records: what it queues (health marked stopped) carries the final
        counters, and is written within the grace period."""
        self._final_records.append(callback)

    async def _flush_forever(self) -> None:
        while True:
            if self._inflight is None:
                if not self._batch:  # else a failed batch waits for its retry (it backed off)
                    await self._wakeup.wait()
            else:
                wait = max(self._confirm_floor, min(CONFIRM_MAX, 2 * self._send_interval))
                with trio.move_on_after(wait):
                    await self._wakeup.wait()
                if not await self._confirm():
                    continue  # failed: what it held is sent again (after the backoff)
            if trio.current_time() < (due := self._last_send + self._window / 2):
                # Busy: batches at least half a window apart.  Paced feeds deliver once a
                # window (this waits for nothing then); feeds that are not paced (trio-websocket,
                # a feed that is behind) would otherwise cost a write for every frame or two.
                # Half, not a whole window: a batch held to a tick of its own would stay a tick
                # behind the feeds' from then on.  After a quiet spell a batch goes at once.
                await trio.sleep_until(due)
            await self._send()

    async def _flush_until_done(self) -> None:
        """Send and confirm until nothing is held (the final flush)."""
        while self._inflight is not None or self._pending or self._batch or self._records:
            if self._inflight is not None:
                await self._confirm()
            else:
                await self._send()

    async def _send(self) -> None:
        """Send what is held, the tickers' commands and then the records', in one write; the
        replies are read by :meth:`_confirm`, later.

        Not waiting for them is what makes a steady feed cheap: the replies of one batch are
        read when the next one goes out (they arrived long before), so a batch costs the loop
        no wake-up of its own for its replies.  One batch at most is unconfirmed: the next is
        sent only after its replies were read, so a failure is known before more is sent.
        """
        self._take()
        batch, records = self._batch, self._records
        if not (batch or records):
            return
        self._records = {}
        now = trio.current_time()
        self._send_interval, self._last_send = now - self._last_send, now
        commands = self.layout.ticker_commands(batch) if batch else []
        commands += records.values()
        try:
            await self._redis.send(commands)
        except BaseException as exc:
            self._records = records | self._records  # newer records win
            if not isinstance(exc, redis.RedisError):
                raise  # cancelled: the batch stays in _batch for the final flush
            self._failed(exc)
        else:
            self._batch = {}
            self._inflight = (batch, records, time.perf_counter())
            return
        await self._backoff()

    async def _confirm(self) -> bool:
        """Read the replies of the batch in flight; on failure it goes back to be sent again,
        under any newer values, after a backoff (``False``).

        A cancellation (shutdown) puts it back for the final flush.  The backoff (here and in
        :meth:`_send`) sleeps outside the ``except``: a failed attempt's exception (and
        whatever its frames held) is gone before the wait, not kept alive through it.
        """
        assert self._inflight is not None
        batch, records, started = self._inflight
        self._inflight = None
        try:
            replies = await self._redis.replies()
        except BaseException as exc:
            self._batch = batch | self._batch if self._batch else batch
            self._records = records | self._records
            if not isinstance(exc, redis.RedisError):
                raise
            if isinstance(exc, NoScriptError) and not self._failures:
                # The server lost the scripts (SCRIPT FLUSH): the connection loads them
                # before the batch goes again, at once.  Sending it again is harmless: what
                # was written is as new as itself, so it is neither written nor published twice.
                self._failures += 1
                return False
            self._failed(exc)
        else:
            if self.layout.monotonic:
                self.rejected += monotonic.rejected(replies)
            self._confirmed(batch, records, time.perf_counter() - started)
            return True
        await self._backoff()
        return False

    async def _backoff(self) -> None:
        self._failures += 1
        await trio.sleep(RETRY.delay(self._failures))

    def _confirmed(self, batch: dict[Key, Item], records: dict[RecordKey, Command], seconds: float) -> None:
        self._failures = 0
        if not self.redis_up:
            self.reason, self._refused = None, False
            self._set_redis_up(True)
            logger.info(
                "Redis is back after {s:.1f} s; latest values written", s=time.monotonic() - self._down_since
            )
        self._check_reconnected()
        self.records_written += len(records)
        if batch:
            self.written += len(batch)
            self.batches += 1
            if self._first_ticker_taken:
                self._first_ticker_taken = False
                self.first_tickers.fire({exchange for exchange, _ in batch})
            self.batch_written.fire((batch, seconds))
        self._flushed.fire(None)

    def _failed(self, error: redis.RedisError) -> None:
        """Record why a batch failed; log when Redis went away or started refusing tickerd (a
        refusal is an ERROR: it will not pass by itself), not on every retry."""
        reason = refusal(error)
        refused = reason is not None
        self.reason = redact(f"Redis refuses tickerd: {reason}" if refused else f"Redis unreachable: {error}")
        if self.redis_up or refused != self._refused:
            self._refused = refused
            if refused:
                logger.error("{reason}; holding the latest values and retrying", reason=self.reason)
            else:
                logger.warning("{reason}; holding the latest values", reason=self.reason)
        if self.redis_up:
            self._down_since = time.monotonic()
            self._set_redis_up(False)

    def _check_reconnected(self) -> None:
        """After a successful round trip: fire :attr:`reconnected` if it needed a new connection."""
        if self._redis.reconnects != self._reconnects_seen:
            self._reconnects_seen = self._redis.reconnects
            self.reconnected.fire(None)

    def _set_redis_up(self, up: bool) -> None:
        self.redis_up = up
        self._redis_changed.fire(up)

    async def redis_state_changed(self) -> None:
        """Wait until Redis goes away or comes back (health, tests)."""
        await self._redis_changed.wait()

    async def flushed(self) -> None:
        """Wait for the next batch of tickers or health records to reach Redis (tests)."""
        await self._flushed.wait()
