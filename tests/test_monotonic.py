"""Writes that never go back in time (fleet mode): the compare-and-set script on the real Redis."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import orjson
import pytest
import redis
import trio

from tests.conftest import REDIS_URL, make_config, stored
from tests.processes import RedisServer
from tickerd import monotonic
from tickerd.layout import RedisLayout
from tickerd.model import Removal, Ticker
from tickerd.monotonic import SEQUENCE_RESET, TICKER_TIME, TICKERS
from tickerd.writer import RedisWriter
from tickerd.writer.connection import RedisConnection

T = 1764474000.25
#: A Binance futures ticker as the decoder merges it: the book's update id, the frame's time.
BASE = Ticker(
    "binance", "BTC/USDT", last=100.0, bid=99.0, ask=101.0, exchange_ts=T, received_ts=T + 0.1, sequence=500
)


class Channel:
    """Every update published on the prefix's channels, read after a round trip of our own
    (a ``PING`` on the subscriber's connection answers after every message published before it)."""

    def __init__(self, client: redis.Redis, layout: RedisLayout) -> None:
        self._layout = layout
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.psubscribe(layout.updates_pattern())
        self._pubsub.get_message(timeout=1.0)

    def published(self) -> list[dict[str, Any]]:
        self._pubsub.ping()
        records: list[dict[str, Any]] = []
        while (message := self._pubsub.get_message(timeout=2.0)) is not None:
            if message["type"] == "pong":
                return records
            if message["type"] == "pmessage":
                records.append(self._layout.decode_ticker(message["data"]))
        raise AssertionError("no PONG after the published messages")

    def close(self) -> None:
        self._pubsub.close()


@pytest.fixture
def channel(redis_client: redis.Redis, prefix: str) -> Iterator[Channel]:
    watcher = Channel(redis_client, RedisLayout(prefix))
    yield watcher
    watcher.close()


async def write(
    layout: RedisLayout, batch: dict[tuple[str, str], Ticker | Removal], url: str = REDIS_URL
) -> int:
    """One round trip of ``batch``'s commands (scripts loaded first); the number rejected."""
    connection = RedisConnection(url, scripts=layout.scripts)
    try:
        return monotonic.rejected(await connection.execute(layout.ticker_commands(batch)))
    finally:
        connection.close()


def one(ticker: Ticker) -> dict[tuple[str, str], Ticker | Removal]:
    return {(ticker.exchange, ticker.symbol): ticker}


def test_a_fleet_writes_monotonically_and_a_single_daemon_plainly() -> None:
    assert make_config("p:", {}, {}, fleet={"name": "prod"}).layout.monotonic is True
    assert make_config("p:", {}, {}).layout.monotonic is False


def test_the_plain_layout_calls_no_script_and_the_monotonic_one_one_per_exchange() -> None:
    assert RedisLayout("p:").scripts == () and RedisLayout("p:", "fullon").scripts == ()
    layout = RedisLayout("p:", monotonic=True)
    other = attrs.evolve(BASE, exchange="okx", symbol="ETH/USDT", sequence=None, exchange_ts=None)
    batch: dict[tuple[str, str], Ticker | Removal] = {
        ("binance", "BTC/USDT"): BASE,
        ("okx", "ETH/USDT"): other,
        ("binance", "X/USDT"): Removal("binance", "X/USDT"),
    }
    assert [list(command) for command in layout.ticker_commands(batch)] == [
        ["EVALSHA", TICKERS.sha, "1", "p:tickers:binance", "p:ticker_updates:binance:", repr(SEQUENCE_RESET),
         "BTC/USDT", "500", repr(T), layout.encode_ticker(BASE)],
        ["EVALSHA", TICKERS.sha, "1", "p:tickers:okx", "p:ticker_updates:okx:", repr(SEQUENCE_RESET),
         "ETH/USDT", "", repr(T + 0.1), layout.encode_ticker(other)],
        ["HDEL", "p:tickers:binance", "X/USDT"],
    ]  # fmt: skip
    fullon = RedisLayout("p:", "fullon", monotonic=True)
    commands = [list(command) for command in fullon.ticker_commands(batch)]
    assert commands[:2] == [
        ["EVALSHA", TICKER_TIME.sha, "1", "p:ticker_time:binance:BTC/USDT", repr(T)],
        ["EVALSHA", TICKER_TIME.sha, "1", "p:ticker_time:okx:ETH/USDT", repr(T + 0.1)],
    ]  # each in a slot of its own, before the hash's script publishes
    assert [command[:4] for command in commands[2:4]] == [
        ["EVALSHA", TICKERS.sha, "1", "p:tickers:binance"],
        ["EVALSHA", TICKERS.sha, "1", "p:tickers:okx"],
    ]
    assert commands[4:] == [["HDEL", "p:tickers:binance", "X/USDT"], ["DEL", "p:ticker_time:binance:X/USDT"]]


def at(**changes: Any) -> Ticker:
    """:data:`BASE` with ``changes``."""
    return attrs.evolve(BASE, **changes)


NO_SEQ = at(sequence=None)
BIG = 2**60
#: (what it shows, the stored ticker, the new one, whether the new one is written)
CASES = [
    ("newer time, no sequence", NO_SEQ, at(sequence=None, exchange_ts=T + 1, last=1.0), True),
    ("older time, no sequence", NO_SEQ, at(sequence=None, exchange_ts=T - 1, last=1.0), False),
    ("the same update again: every time equal", NO_SEQ, NO_SEQ, False),
    ("the same update again: sequence and every time equal", BASE, BASE, False),
    ("equal time, later receive time", NO_SEQ, at(sequence=None, received_ts=T + 0.2, last=1.0), True),
    ("equal sequence and time, later receive time", BASE, at(received_ts=T + 0.2, last=1.0), True),
    ("a replica's copy, received later: written again", BASE, at(received_ts=T + 0.2), True),
    ("equal sequence and time, earlier receive time", BASE, at(received_ts=T + 0.05, last=1.0), False),
    ("a replica's lower sequence, later receive", BASE, at(sequence=499, received_ts=T + 9, last=1.0), False),
    (
        "a replica's older time, later receive",
        NO_SEQ,
        at(sequence=None, exchange_ts=T - 1, received_ts=T + 9),
        False,
    ),
    ("higher sequence, older time", BASE, at(sequence=501, exchange_ts=T - 1, last=1.0), True),
    ("lower sequence, newer time", BASE, at(sequence=499, exchange_ts=T + 1, last=1.0), False),
    ("the sequence repeated by a stats frame, newer time", BASE, at(exchange_ts=T + 0.5, last=1.0), True),
    ("the sequence repeated, older time", BASE, at(exchange_ts=T - 0.5, last=1.0), False),
    ("one digit more", at(sequence=99), at(sequence=100, exchange_ts=T - 1, last=1.0), True),
    ("beyond 2**53, lower", at(sequence=BIG + 1), at(sequence=BIG, exchange_ts=T + 1, last=1.0), False),
    ("beyond 2**53, higher", at(sequence=BIG), at(sequence=BIG + 1, exchange_ts=T - 1, last=1.0), True),
    ("the stored one has no sequence: time", NO_SEQ, at(sequence=1, exchange_ts=T + 1, last=1.0), True),
    ("the new one has no sequence: time", BASE, at(sequence=None, exchange_ts=T - 1, last=1.0), False),
    (
        "no exchange time: the receive time",
        at(sequence=None, exchange_ts=None),
        at(sequence=None, exchange_ts=None, received_ts=T + 0.2, last=1.0),
        True,
    ),
    ("a venue that restarted its numbering", BASE, at(sequence=3, exchange_ts=T + SEQUENCE_RESET + 1), True),
    ("old numbers from long ago", at(sequence=3), at(exchange_ts=T - SEQUENCE_RESET - 1, last=1.0), False),
]


@pytest.mark.parametrize(
    ("stored_ticker", "new", "written"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
async def test_a_value_is_written_and_published_only_if_newer(
    redis_client: redis.Redis,
    prefix: str,
    channel: Channel,
    stored_ticker: Ticker,
    new: Ticker,
    written: bool,
) -> None:
    layout = RedisLayout(prefix, monotonic=True)
    assert await write(layout, one(stored_ticker)) == 0  # nothing stored yet: written
    assert channel.published() == [layout.decode_ticker(layout.encode_ticker(stored_ticker))]
    record = stored(redis_client, prefix, "binance", "BTC/USDT")
    assert await write(layout, one(new)) == (0 if written else 1)
    expected = layout.decode_ticker(layout.encode_ticker(new if written else stored_ticker))
    assert stored(redis_client, prefix, "binance", "BTC/USDT") == expected
    assert channel.published() == ([expected] if written else [])  # a rejected value is not published
    assert record is not None and monotonic.newer(record, expected) is written  # the rule in Python agrees


async def test_a_batch_writes_its_newer_values_and_rejects_the_others(
    redis_client: redis.Redis, prefix: str, channel: Channel
) -> None:
    """Symbols of one exchange in one call, each judged on its own; other exchanges in theirs."""
    layout = RedisLayout(prefix, monotonic=True)
    symbols = [f"S{i}/USDT" for i in range(4)]
    await write(layout, {("binance", s): attrs.evolve(BASE, symbol=s) for s in symbols})
    channel.published()
    batch: dict[tuple[str, str], Ticker | Removal] = {
        ("binance", s): attrs.evolve(BASE, symbol=s, sequence=500 + (1 if i % 2 else -1), last=float(i))
        for i, s in enumerate(symbols)
    }
    batch["okx", "BTC/USDT"] = attrs.evolve(BASE, exchange="okx")
    assert await write(layout, batch) == 2
    assert {r["symbol"]: r["last"] for r in layout.read_tickers(redis_client, "binance").values()} == {
        "S0/USDT": 100.0,
        "S1/USDT": 1.0,
        "S2/USDT": 100.0,
        "S3/USDT": 3.0,
    }
    assert sorted((r["exchange"], r["symbol"]) for r in channel.published()) == [
        ("binance", "S1/USDT"),
        ("binance", "S3/USDT"),
        ("okx", "BTC/USDT"),
    ]


async def test_a_value_stored_by_another_writer_is_read_whatever_its_spacing(
    redis_client: redis.Redis, prefix: str
) -> None:
    """fullon's own programs write the hash with ``json.dumps``' spaces: its time is read all the same."""
    layout = RedisLayout(prefix, monotonic=True)
    foreign = f'{{"symbol": "BTC/USDT", "exchange": "binance", "price": 5.0, "time": {T!r}, "sequence": 700}}'
    redis_client.hset(layout.tickers("binance"), "BTC/USDT", foreign)
    assert await write(layout, one(attrs.evolve(BASE, sequence=600, exchange_ts=T + 1))) == 1
    assert await write(layout, one(attrs.evolve(BASE, sequence=701, exchange_ts=T - 1))) == 0
    assert (stored(redis_client, prefix, "binance", "BTC/USDT") or {})["sequence"] == 701


async def test_the_fullon_layout_orders_by_time_and_keeps_ticker_time_from_going_back(
    redis_client: redis.Redis, prefix: str, channel: Channel
) -> None:
    """The strict record has no ``sequence``: time alone decides, for the hash and for the
    ``ticker_time`` key (a script of its own: another cluster slot); removal deletes both."""
    layout = RedisLayout(prefix, "fullon", monotonic=True)
    time_key = layout.ticker_time("binance", "BTC/USDT")
    await write(layout, one(BASE))
    assert redis_client.get(time_key) == repr(T).encode()
    channel.published()
    assert await write(layout, one(attrs.evolve(BASE, sequence=900, exchange_ts=T - 1, last=1.0))) == 1
    assert redis_client.get(time_key) == repr(T).encode()
    assert (stored(redis_client, prefix, "binance", "BTC/USDT") or {})["price"] == 100.0
    assert channel.published() == []
    assert await write(layout, one(attrs.evolve(BASE, sequence=1, exchange_ts=T + 2, last=2.0))) == 0
    assert redis_client.get(time_key) == repr(T + 2).encode()
    record = stored(redis_client, prefix, "binance", "BTC/USDT")
    assert record is not None and record["price"] == 2.0 and "sequence" not in record
    assert channel.published() == [record]
    # The same time again: no receive time to break the tie on, so another value is the later
    # frame (written), an identical one a replica's copy (not published twice).
    tie = attrs.evolve(BASE, exchange_ts=T + 2, last=3.0)
    assert await write(layout, one(tie)) == 0
    assert channel.published() == [tied := stored(redis_client, prefix, "binance", "BTC/USDT")]
    assert tied is not None and tied["price"] == 3.0 and monotonic.newer(record, tied) is True
    copy = attrs.evolve(tie, received_ts=T + 9)
    assert await write(layout, one(copy)) == 1
    assert channel.published() == []
    assert monotonic.newer(tied, layout.decode_ticker(layout.encode_ticker(copy))) is False
    redis_client.set(time_key, repr(T + 5))  # a newer time written by someone else stays
    await write(layout, one(attrs.evolve(BASE, exchange_ts=T + 3)))
    assert redis_client.get(time_key) == repr(T + 5).encode()
    await write(layout, {("binance", "BTC/USDT"): Removal("binance", "BTC/USDT")})
    assert redis_client.exists(time_key, layout.tickers("binance")) == 0


async def write_through(writer: RedisWriter, tickers: Sequence[Ticker]) -> None:
    """Run ``writer`` until ``tickers`` are written (and their replies read)."""
    writer.sink.send_nowait(tickers)
    target = writer.written + len(tickers)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        with trio.fail_after(10):
            while writer.written < target:
                await writer.flushed()
        nursery.cancel_scope.cancel()


async def test_a_lagging_instance_never_overwrites_the_latest_value(
    redis_client: redis.Redis, prefix: str, channel: Channel
) -> None:
    """Two writers on one prefix, as two instances collecting one symbol: the one behind
    writes nothing, publishes nothing, and counts what it did not write."""
    layout = RedisLayout(prefix, monotonic=True)
    ahead, behind = RedisWriter(REDIS_URL, layout), RedisWriter(REDIS_URL, layout)
    await write_through(ahead, [attrs.evolve(BASE, sequence=510, last=2.0)])
    await write_through(
        behind, [attrs.evolve(BASE, sequence=505, last=1.0), attrs.evolve(BASE, symbol="ETH/USDT")]
    )
    assert (stored(redis_client, prefix, "binance", "BTC/USDT") or {})["last"] == 2.0
    assert [(r["symbol"], r["last"]) for r in channel.published()] == [("BTC/USDT", 2.0), ("ETH/USDT", 100.0)]
    assert (ahead.rejected, behind.rejected, behind.written) == (0, 1, 2)
    await write_through(ahead, [attrs.evolve(BASE, symbol="ETH/USDT")])  # a copy, every time equal
    assert ahead.rejected == 1 and channel.published() == []


async def test_scripts_are_loaded_again_after_script_flush_and_a_restart(redis_server: RedisServer) -> None:
    """A ``NOSCRIPT`` reply has the scripts loaded and the batch sent again at once (Redis is
    not reported down); an empty restarted server gets them with the new connection."""
    layout = RedisLayout("", "fullon", monotonic=True)
    client = redis.Redis.from_url(redis_server.url)
    writer = RedisWriter(redis_server.url, layout)
    changes: list[bool] = []

    async def written(last: float) -> None:
        writer.sink.send_nowait([attrs.evolve(BASE, last=last, exchange_ts=T + last)])
        with trio.fail_after(10):
            while (stored(client, "", "binance", "BTC/USDT") or {}).get("last") != last:
                await writer.flushed()

    async def watch_redis_state() -> None:
        while True:
            await writer.redis_state_changed()
            changes.append(writer.redis_up)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        nursery.start_soon(watch_redis_state)
        await written(1.0)
        assert client.script_exists(TICKERS.sha, TICKER_TIME.sha) == [True, True]
        client.script_flush()
        await written(2.0)
        assert changes == [] and writer.rejected == 0
        redis_server.restart()
        await written(3.0)
        assert client.get(layout.ticker_time("binance", "BTC/USDT")) == repr(T + 3.0).encode()
        nursery.cancel_scope.cancel()
    client.close()


def test_the_rejected_count_is_read_from_the_script_replies_alone() -> None:
    """HSET, HDEL, DEL, SET and the time script answer integers or strings; only the
    ticker script answers an array."""
    assert monotonic.rejected([[2], 1, b"OK", 0, [0], [3]]) == 5
    assert orjson.loads(RedisLayout(monotonic=True).encode_ticker(BASE))["sequence"] == 500
