"""Fake Binance USDⓈ-M (``fstream``) and COIN-M (``dstream``) futures servers.

Both speak the Binance stream protocol of :class:`~tickerd.testing.binance.FakeBinanceStreams`
and send the futures frames: ``bookTicker`` (with ``e``, ``E``, ``T``), ``24hrTicker`` without
best prices, and ``markPriceUpdate`` (``"r":""``, ``"T":0`` for a dated future).  The USDⓈ-M
fake serves, as Binance does since 2026, ``bookTicker`` on ``/public/ws`` connections and the
other two on ``/market/ws`` ones, and only ``/public`` streams on the unrouted ``/ws``; a
stream subscribed on a path that does not serve it is acknowledged, never sent, and recorded as
a violation.  The COIN-M fake serves everything on ``/ws``.  Servers ping every 3 minutes.
"""

from __future__ import annotations

import abc
import time
from typing import Any, ClassVar

import orjson

from tickerd.testing.binance import FakeBinanceStreams
from tickerd.testing.natives import NativeIndex
from tickerd.testing.server import FakeConnection

_BOOK = "bookTicker"
_STATISTICS = "ticker"
_MARK = "markPrice@1s"


class FakeBinanceFutures(FakeBinanceStreams):
    """``push(symbol, ...)`` sends each subscribed connection the frames of ``symbol``'s state
    that its path serves; ``drop(group)`` drops the connections of one path only."""

    path = ""
    max_messages_per_second = 10
    #: The stream kinds served by URL path.
    paths: ClassVar[dict[str, tuple[str, ...]]]
    #: The quote assets of the venue's symbols; inverse ones settle in their base.
    quotes: ClassVar[tuple[str, ...]]
    inverse: ClassVar[bool]

    def __init__(self, *, ping_interval: float = 180.0, **kwargs: Any) -> None:
        super().__init__(ping_interval=ping_interval, **kwargs)
        #: Per connection, the streams it subscribed (``btcusdt@bookTicker``).
        self._streams: dict[FakeConnection, set[str]] = {}
        self._known = NativeIndex(lambda symbol: self._native(symbol).lower(), self.market, self.rejected)

    def _served(self, conn: FakeConnection) -> tuple[str, ...]:
        """The stream kinds ``conn``'s path serves (a detached connection gets all)."""
        if not hasattr(conn, "ws"):
            return (_BOOK, _STATISTICS, _MARK)
        return self.paths.get(conn.ws.path or "", ())

    async def drop(self, group: str | None = None) -> None:
        """Drop every connection, or only those of the endpoint group ``group``."""
        for conn in list(self.connections):
            if group is None or conn.ws.path == f"/{group}/ws":
                await conn.drop()

    # -- subscriptions -----------------------------------------------------------------------

    def on_stream(self, conn: FakeConnection, subscribe: bool, stream: str) -> None:
        name, _, kind = stream.partition("@")
        symbol = self._unified(name)
        if symbol is None or symbol in self.rejected:
            return
        if kind not in self._served(conn):
            self.violations.append(f"{stream} on {conn.ws.path}: Binance does not send it there")
        streams = self._streams.setdefault(conn, set())
        own = {s for s in streams if s.partition("@")[0] == name}
        if subscribe:
            streams.add(stream)
            conn.subscribe(symbol)
        elif stream in streams:
            streams.discard(stream)
            if own == {stream}:
                conn.unsubscribe(symbol)

    def _native(self, symbol: str) -> str:
        pair, _, settle = symbol.partition(":")
        settle, _, expiry = settle.partition("-")
        name = pair.replace("/", "")
        if expiry:
            return f"{name}_{expiry}"
        return f"{name}_PERP" if self.inverse else name

    def _unified(self, name: str) -> str | None:
        """Stream name → unified symbol: a market the fake holds, else the venue's naming
        (``btcusdt``, ``btcusdt_261225``; ``btcusd_perp``, ``btcusd_261225``)."""
        known = self._known.get(name)
        if known is not None:
            return known
        pair, _, suffix = name.upper().partition("_")
        if (suffix == "PERP" and not self.inverse) or (not suffix and self.inverse):
            return None
        for quote in self.quotes:
            if pair.endswith(quote) and len(pair) > len(quote):
                base = pair[: -len(quote)]
                settle = base if self.inverse else quote
                expiry = f"-{suffix}" if suffix and suffix != "PERP" else ""
                return f"{base}/{quote}:{settle}{expiry}"
        return None

    # -- frames ------------------------------------------------------------------------------

    def ticker_frames(self, conn: FakeConnection, symbol: str, state: dict[str, float]) -> list[str]:
        native = self._native(symbol)
        subscribed = self._streams.get(conn)
        frames = []
        for kind, build in ((_BOOK, self._book), (_STATISTICS, self._statistics), (_MARK, self._mark)):
            if kind in self._served(conn) and (
                subscribed is None or f"{native.lower()}@{kind}" in subscribed
            ):
                frames.append(orjson.dumps(build(native, state)).decode())
        return frames

    def _time(self, state: dict[str, float]) -> int:
        """Event time in ms: the state's ``ts`` where a test set one."""
        return int(state.get("ts", time.time()) * 1000)

    def _book(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        now = self._time(state)
        return {
            "e": "bookTicker",
            "u": self.next_update_id(),
            "s": native,
            "b": f"{state['bid']:.8f}",
            "B": f"{state['bid_size']:g}",
            "a": f"{state['ask']:.8f}",
            "A": f"{state['ask_size']:g}",
            "T": now - 2,
            "E": now,
        }

    def _statistics(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        now = self._time(state)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": native,
            "p": f"{state['change']:.8f}",
            "P": f"{state['change_pct']:.3f}",
            "w": f"{state['last']:.8f}",
            "c": f"{state['last']:.8f}",
            "Q": "1",
            "o": f"{state['last'] - state['change']:.8f}",
            "h": f"{state['high']:.8f}",
            "l": f"{state['low']:.8f}",
            **self._volumes(state),
            "O": now - 86_400_000,
            "C": now,
            "F": 0,
            "L": 18150,
            "n": 18151,
        }

    @abc.abstractmethod
    def _volumes(self, state: dict[str, float]) -> dict[str, str]:
        """``v`` and ``q`` of a ``24hrTicker`` for a base-asset volume of ``state['volume']``."""

    def _mark(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        dated = not native.endswith("_PERP") and "_" in native
        return {
            "e": "markPriceUpdate",
            "E": self._time(state),
            "s": native,
            "p": f"{state['mark']:.8f}",
            "i": f"{state['index']:.8f}",
            "P": f"{state['index']:.8f}",
            "r": "" if dated else f"{state['funding_rate']:.8f}",
            "T": 0 if dated else int(state["next_funding"] * 1000),
        }


class FakeBinanceUsdm(FakeBinanceFutures):
    """USDⓈ-M: ``/public/ws`` and ``/market/ws``; the unrouted ``/ws`` serves ``/public`` only."""

    name = "binance_usdm"
    paths: ClassVar[dict[str, tuple[str, ...]]] = {
        "/public/ws": (_BOOK,),
        "/market/ws": (_STATISTICS, _MARK),
        "/ws": (_BOOK,),
    }
    quotes = ("USDT", "USDC")
    inverse = False

    def _volumes(self, state: dict[str, float]) -> dict[str, str]:
        return {"v": f"{state['volume']:.3f}", "q": f"{state['volume'] * state['last']:.2f}"}

    def _mark(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        frame = super()._mark(native, state)
        frame["ap"] = frame["p"]  # USDⓈ-M adds the mark price's moving average
        return frame


class FakeBinanceCoinm(FakeBinanceFutures):
    """COIN-M: everything on ``/ws``; sizes in contracts of 100 USD."""

    name = "binance_coinm"
    paths: ClassVar[dict[str, tuple[str, ...]]] = {"/ws": (_BOOK, _STATISTICS, _MARK)}
    quotes = ("USD",)
    inverse = True

    def _volumes(self, state: dict[str, float]) -> dict[str, str]:
        contracts = state["volume"] * state["last"] / 100
        return {"v": f"{contracts:.0f}", "q": f"{state['volume']:.8f}"}

    def _book(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        return super()._book(native, state) | {"ps": native.partition("_")[0]}

    def _statistics(self, native: str, state: dict[str, float]) -> dict[str, Any]:
        return super()._statistics(native, state) | {"ps": native.partition("_")[0]}
