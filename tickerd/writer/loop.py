"""The coalescing loop: the one task that decides what reaches Redis, and when.

Feeds put tickers into a memory channel; the writer drains it continuously into a dict keyed
by (exchange, symbol), so a burst is absorbed by *coalescing* (memory bounded by the number of
symbols, not by the burst), and whenever Redis is free it writes the whole dict in one round
trip from its worker thread (:mod:`tickerd.writer.bridge`), as the commands the layout
(:mod:`tickerd.layout`) builds.  If Redis goes away, the batch goes back under any newer
values and is retried with backoff: nothing latest is lost.  A failed attempt leaves nothing
behind (its encoded commands go with it; see :func:`tickerd.writer.bridge._scrubbed`), so an
outage costs memory for one latest value per symbol, however long it lasts.

A symbol that leaves the desired set travels the same way: the daemon sends its
:class:`~tickerd.model.Removal` through the channel, behind any of its tickers still queued,
and it replaces the symbol's pending value like a newer ticker would, so the value is never
written after its field was deleted (``HDEL``).

Health records (:mod:`tickerd.monitor`) travel through the same task, so Redis has one writer;
they are rare (a few a minute) and go in a round trip of their own, after the tickers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import trio
from loguru import logger

from tickerd.backoff import Backoff
from tickerd.broadcast import Broadcast
from tickerd.freshness import LastSeen
from tickerd.layout import Command, RedisLayout
from tickerd.model import Removal, Ticker
from tickerd.redact import redact
from tickerd.redis_errors import refusal
from tickerd.writer.bridge import Reconnects, WorkerThread, execute

Key = tuple[str, str]
#: What the channel carries and a batch holds per (exchange, symbol): its latest ticker, or
#: its removal.
Item = Ticker | Removal
#: A written batch and the seconds its round trip took (what metrics observe).
Written = tuple[dict[Key, Item], float]

#: While Redis is unreachable or refuses tickerd: retry soon (a restart is often quick), then
#: every 2 s (a refusal too: a rotated password may be put right at any moment).  No jitter:
#: there is one writer per daemon, nothing to spread out.
RETRY = Backoff(first=0.05, cap=2.0, jitter=False)


class RedisWriter:
    """Coalesce, pipeline, retry.  ``run`` is the task; counters are for health and metrics."""

    def __init__(self, client: redis.Redis, layout: RedisLayout, *, grace: float = 5.0) -> None:
        self._client = client
        self.layout = layout
        self._grace = grace
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
        self.redis_up = True
        #: Why Redis takes no writes (it refuses tickerd, or cannot be reached); ``None`` while
        #: it does.
        self.reason: str | None = None
        #: Whether the failure logged last was a refusal (an ERROR), so each kind is logged
        #: once however often the retry fails.
        self._refused = False
        self._down_since = 0.0
        self._reconnects = Reconnects()
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
        self._records: dict[str | tuple[str, str], Command] = {}
        self._closing: list[Callable[[], None]] = []
        self._final_records: list[Callable[[], None]] = []
        self._thread = WorkerThread()

    async def run(self, receive: trio.MemoryReceiveChannel[Item]) -> None:
        """Write until cancelled, then flush what is held within the grace period.

        The grace period is a hard bound whatever Redis does: a write still hanging at its
        end is abandoned in the worker thread, and :attr:`unwritten` counts what it held.
        """
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, receive)
                await self._flush_forever()
        finally:
            for callback in self._closing:
                callback()
            with trio.move_on_after(self._grace, shield=True):
                self._drain_nowait(receive)
                await self._flush_until_done()
                for callback in self._final_records:
                    callback()
                await self._flush_records()
            self._thread.stop()
            self.unwritten = len(self._batch.keys() | self._pending.keys())
            if self.unwritten:
                logger.error(
                    "shutdown: {n} latest values not written to Redis within the grace period ({s:g} s)",
                    n=self.unwritten,
                    s=self._grace,
                )

    def _put(self, ticker: Item) -> None:
        key = (ticker.exchange, ticker.symbol)
        if key in self._pending:
            self.coalesced += 1
        self._pending[key] = ticker

    def _drain_nowait(self, receive: trio.MemoryReceiveChannel[Item]) -> None:
        while True:
            try:
                self._put(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    async def _drain(self, receive: trio.MemoryReceiveChannel[Item]) -> None:
        """Move tickers from the channel into the pending dict as fast as they come."""
        while True:
            try:
                ticker = await receive.receive()
            except trio.EndOfChannel:
                return
            self._put(ticker)
            self._drain_nowait(receive)
            self._wakeup.set()

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
        """The removal of ``symbol``'s stored value, for the caller to send through the
        channel (behind the symbol's tickers already queued, which it replaces).  Once it is
        taken for Redis, the symbol's per-symbol state (its last-seen time) is pruned."""
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
            await self._wakeup.wait()
            await self._flush_once()
            await self._flush_records()

    async def _flush_records(self) -> None:
        """Write the queued health records; on failure keep them (newer ones win) for the next
        wake-up, which the next record or ticker brings within one health interval."""
        if not self._records:
            return
        records, self._records = self._records, {}
        try:
            await self._thread.run_sync(self._write_records, records)
        except (redis.RedisError, trio.Cancelled) as exc:
            self._records = records | self._records  # for the next try, or the final flush
            if isinstance(exc, trio.Cancelled):
                raise
            return
        self.records_written += len(records)
        self._check_reconnected()
        self._flushed.fire(None)

    def _write_records(self, records: dict[str | tuple[str, str], Command]) -> None:
        """The queued records' commands in one round trip (writer thread)."""
        execute(self._client, list(records.values()), self._reconnects)

    async def _flush_until_done(self) -> None:
        while self._pending or self._batch:
            await self._flush_once()

    async def _flush_once(self) -> None:
        """Write the batch; while Redis is unreachable, retry it with backoff, newer values
        taken in before each retry.

        A cancellation (shutdown) leaves the batch in :attr:`_batch` for the final flush.  The
        backoff sleeps outside the ``except``: a failed attempt's exception (and whatever its
        frames held) is gone before the wait, not kept alive through it.
        """
        self._take()
        failures = 0
        while self._batch:
            batch = self._batch
            started = time.perf_counter()
            try:
                await self._thread.run_sync(self._write, batch)
            except redis.RedisError as exc:
                self._failed(exc)
            else:
                self._batch = {}
                self._written(batch, time.perf_counter() - started)
                return
            failures += 1
            await trio.sleep(RETRY.delay(failures))
            self._take()

    def _written(self, batch: dict[Key, Item], seconds: float) -> None:
        if not self.redis_up:
            self.reason, self._refused = None, False
            self._set_redis_up(True)
            logger.info(
                "Redis is back after {s:.1f} s; latest values written", s=time.monotonic() - self._down_since
            )
        self._check_reconnected()
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
        if self._reconnects.count != self._reconnects_seen:
            self._reconnects_seen = self._reconnects.count
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

    def _write(self, batch: dict[Key, Item]) -> None:
        """The layout's commands for the batch, in one round trip (writer thread: the tickers
        are encoded there, off the event loop)."""
        execute(self._client, self.layout.ticker_commands(batch), self._reconnects)
