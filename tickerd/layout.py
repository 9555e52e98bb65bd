"""Where tickerd's data lives in Redis: every key name, the record encoding, the read helpers.

One class owns the layout so that the writer, the monitor, ``status``, ``watch``, the demo, the
examples and the tests agree by construction (and so a fleet or Redis Cluster variant has one
place to change):

* ``{prefix}tickers:{exchange}``: hash, symbol → latest ticker JSON (fullon_cache layout);
* ``{prefix}ticker_updates:{exchange}:{symbol}``: pub/sub channel, the same JSON on each update;
* ``{prefix}tickerd:heartbeat``: the daemon's own record (expires);
* ``{prefix}tickerd:health:{exchange}``: one exchange's health record (expires).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import orjson

from tickerd import snapshots
from tickerd.snapshots import ExchangeRecord, Heartbeat

if TYPE_CHECKING:
    import redis


@attrs.frozen
class RedisLayout:
    """Key names under one ``prefix`` (``""`` by default, as fullon readers expect)."""

    prefix: str = ""

    # -- tickers ---------------------------------------------------------------------------

    def tickers(self, exchange: str) -> str:
        """The hash of latest tickers of ``exchange``."""
        return f"{self.prefix}tickers:{exchange}"

    def tickers_pattern(self) -> str:
        """``SCAN`` pattern matching every exchange's ticker hash."""
        return f"{self.prefix}tickers:*"

    def updates(self, exchange: str, symbol: str) -> str:
        """The channel each written update of ``(exchange, symbol)`` is published on."""
        return f"{self.prefix}ticker_updates:{exchange}:{symbol}"

    def updates_pattern(self, exchange: str = "*") -> str:
        """``PSUBSCRIBE`` pattern: every update (of one exchange, if named)."""
        return (
            f"{self.prefix}ticker_updates:{exchange}:*"
            if exchange != "*"
            else f"{self.prefix}ticker_updates:*"
        )

    # -- health ----------------------------------------------------------------------------

    def heartbeat(self) -> str:
        """The daemon's own record."""
        return f"{self.prefix}tickerd:heartbeat"

    def health(self, exchange: str) -> str:
        """One exchange's health record."""
        return f"{self.prefix}tickerd:health:{exchange}"

    def read_health(self, client: redis.Redis) -> tuple[Heartbeat | None, dict[str, ExchangeRecord]]:
        """The heartbeat (``None`` when absent: never started, or expired) and the record of
        every exchange it lists that has one, as ``tickerd status`` and ``watch`` read them
        (blocking: redis-py)."""
        raw = client.get(self.heartbeat())
        if raw is None:
            return None, {}
        heartbeat = snapshots.loads(raw, Heartbeat)
        exchanges: dict[str, ExchangeRecord] = {}
        names = heartbeat.exchanges
        if names:
            for name, value in zip(names, client.mget([self.health(n) for n in names]), strict=True):
                if value is not None:
                    exchanges[name] = snapshots.loads(value, ExchangeRecord)
        return heartbeat, exchanges

    def owned_pattern(self) -> str:
        """Every key of this layout's prefix (tests clean up with it)."""
        return f"{self.prefix}*"


def encode(record: dict[str, Any]) -> bytes:
    """A record as stored (tickers and health records are JSON objects)."""
    return orjson.dumps(record)


def decode(raw: bytes | str) -> dict[str, Any]:
    """A stored record back to a dict."""
    result: dict[str, Any] = orjson.loads(raw)
    return result
