"""The coalescing loop: the one task that decides what reaches Redis, and when.

Feeds put tickers into a memory channel; the writer drains it continuously into a dict keyed
by (exchange, symbol), so a burst is absorbed by *coalescing* (memory bounded by the number of
symbols, not by the burst), and whenever Redis is free it writes the whole dict in one round
trip from its worker thread (:mod:`tickerd.writer.bridge`), as the commands the layout
(:mod:`tickerd.layout`) builds.  If Redis goes away, the batch goes back under any newer
values and is retried with backoff: nothing latest is lost.

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
from tickerd.layout import Command, RedisLayout
from tickerd.model import Ticker
from tickerd.redact import redact
from tickerd.redis_errors import refusal
from tickerd.writer.bridge import Reconnects, WorkerThread, execute

Key = tuple[str, str]
#: A written batch and the seconds its round trip took (what metrics observe).
Written = tuple[dict[Key, Ticker], float]

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
        self._pending: dict[Key, Ticker] = {}
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
        #: (exchange, symbol) → trio time of the latest batch that held its ticker: taken once
        #: per coalesced batch, so staleness costs the hot path nothing per frame.
        self.last_seen: dict[Key, float] = {}
        #: Fired, once the batch is written (counters included), with the exchanges of a batch
        #: that held some symbol's first ticker: health's "waiting" changed.  Found by the size
        #: of ``last_seen``, so a batch pays one comparison.
        self.first_tickers = Broadcast[set[str]]()
        self._first_ticker_taken = False
        #: Fired after each written batch of tickers (metrics connect to it).
        self.batch_written = Broadcast[Written]()
        self.records_written = 0
        self._records: dict[str, tuple[bytes | None, int]] = {}
        self._closing: list[Callable[[], None]] = []
        self._thread = WorkerThread()

    async def run(self, receive: trio.MemoryReceiveChannel[Ticker]) -> None:
        """Write until cancelled, then flush what is held within the grace period."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, receive)
                await self._flush_forever()
        finally:
            for callback in self._closing:
                callback()
            with trio.move_on_after(self._grace, shield=True) as scope:
                self._drain_nowait(receive)
                await self._flush_until_done()
                await self._flush_records()
            self._thread.stop()
            if scope.cancelled_caught and self._pending:
                logger.error(
                    "shutdown: {n} tickers not written within the grace period", n=len(self._pending)
                )

    def _put(self, ticker: Ticker) -> None:
        key = (ticker.exchange, ticker.symbol)
        if key in self._pending:
            self.coalesced += 1
        self._pending[key] = ticker

    def _drain_nowait(self, receive: trio.MemoryReceiveChannel[Ticker]) -> None:
        while True:
            try:
                self._put(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    async def _drain(self, receive: trio.MemoryReceiveChannel[Ticker]) -> None:
        """Move tickers from the channel into the pending dict as fast as they come."""
        while True:
            try:
                ticker = await receive.receive()
            except trio.EndOfChannel:
                return
            self._put(ticker)
            self._drain_nowait(receive)
            self._wakeup.set()

    def _take(self) -> dict[Key, Ticker]:
        batch, self._pending = self._pending, {}
        self._wakeup = trio.Event()
        if batch:
            seen = self.last_seen
            known = len(seen)
            seen.update(dict.fromkeys(batch, trio.current_time()))
            self._first_ticker_taken |= len(seen) != known
        return batch

    def last_tick_times(self, exchange: str, symbols: list[str]) -> dict[str, float]:
        """Epoch time of each symbol's latest ticker (symbols without one are left out)."""
        now, wall = trio.current_time(), time.time()
        seen = self.last_seen
        return {s: wall - (now - seen[exchange, s]) for s in symbols if (exchange, s) in seen}

    def put_record(self, key: str, value: bytes | None, ttl: int) -> None:
        """Queue a health record: ``SET key value EX ttl``, or ``DEL key`` for ``None``.

        The newest record per key wins, like tickers, so a burst of state changes costs
        one write per key.
        """
        self._records[key] = (value, ttl)
        self._wakeup.set()

    def at_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the writer stops, before its final flush: the last records
        (health marked stopped) queued there are written within the grace period."""
        self._closing.append(callback)

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
        except redis.RedisError:
            self._records = records | self._records
            return
        self.records_written += len(records)
        self._check_reconnected()
        self._flushed.fire(None)

    def _write_records(self, records: dict[str, tuple[bytes | None, int]]) -> None:
        """``SET key value EX ttl`` per record, ``DEL key`` for a withdrawn one (writer thread)."""
        commands: list[Command] = [
            ("DEL", key) if value is None else ("SET", key, value, "EX", str(ttl))
            for key, (value, ttl) in records.items()
        ]
        execute(self._client, commands, self._reconnects)

    async def _flush_until_done(self) -> None:
        while self._pending:
            await self._flush_once()

    async def _flush_once(self) -> None:
        """Write the pending batch, or put it back and wait while Redis is unreachable."""
        batch = self._take()
        if not batch:
            return
        failures = 0
        while True:
            try:
                started = time.perf_counter()
                await self._thread.run_sync(self._write, batch)
                break
            except redis.RedisError as exc:
                self._failed(exc)
                failures += 1
                try:
                    await trio.sleep(RETRY.delay(failures))
                except trio.Cancelled:
                    # Shutdown while Redis is away: the final flush (within the grace
                    # period) must still hold these values, under any newer ones.
                    batch.update(self._pending)
                    self._pending = batch
                    raise
                batch.update(self._take())  # newer values replace what the failed batch held
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
        self.batch_written.fire((batch, time.perf_counter() - started))
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

    def _write(self, batch: dict[Key, Ticker]) -> None:
        """The layout's commands for the batch, in one round trip (writer thread: the tickers
        are encoded there, off the event loop)."""
        execute(self._client, self.layout.ticker_commands(batch), self._reconnects)
