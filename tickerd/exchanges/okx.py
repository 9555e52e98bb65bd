"""OKX v5 public ``tickers`` channel: spot (``BTC-USDT``) and perpetual swaps (``BTC-USDT-SWAP``).

Every push is a full object (no merging), with best bid/ask and sizes, so one channel is
enough.  What shapes this module:

* OKX allows 480 subscribe/unsubscribe requests per connection per hour, so symbols are
  batched many to a request (one arg each; the args of a request must stay under 64 KB).
* OKX acks each arg separately and refuses a bad one with an ``error`` event that names only
  the instrument in its text (``channel:tickers,instId:LTC-USD doesn't exist``), while the
  request's other args still subscribe; so the instId is read from the text.
* OKX closes a connection after 30 s without a push; the client keeps it alive with the
  *plain text* ``ping`` (answered by plain text ``pong``, which is not JSON and not junk).
* ``{"event":"notice","code":"64008"}`` warns that the server will close the connection for an
  upgrade about 30 s later: the loop opens a replacement before that happens.

For swaps, ``bidSz``/``askSz`` count contracts (OKX sends no contract size on this channel),
while the 24 h volume is taken from ``volCcy24h``, which is in the base currency for swaps; for
spot ``vol24h`` is the base volume.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.base import (
    Decoder,
    Exchange,
    Keepalive,
    ReconnectRequested,
    Rejected,
    Subscribed,
    chunks,
    split_unified,
)
from tickerd.model import Ticker

#: Args per subscribe request: a few KB, far under OKX's 64 KB, and few requests per hour.
_PER_REQUEST = 100
#: The service-upgrade notice: OKX will close the connection shortly.
_UPGRADE_NOTICE = "64008"
_INST_ID = re.compile(r"instId:([A-Za-z0-9\-]+)")


def native(symbol: str) -> str:
    """``BTC/USDT`` → ``BTC-USDT``; perpetual swaps ``BTC/USDT:USDT`` → ``BTC-USDT-SWAP``
    and ``BTC/USD:BTC`` → ``BTC-USD-SWAP``."""
    base, quote, settle = split_unified(symbol)
    return f"{base}-{quote}" if settle is None else f"{base}-{quote}-SWAP"


def _change(last: object, open_24h: object) -> tuple[float | None, float | None]:
    """24 h change and percent from ``last`` and ``open24h`` (exact decimals, no float noise)."""
    if last in (None, "") or open_24h in (None, ""):
        return None, None
    now, then = Decimal(str(last)), Decimal(str(open_24h))
    change = now - then
    return float(change), (float(change / then * 100) if then else None)


class OKXDecoder(Decoder):
    """Decodes ``tickers`` pushes, per-arg acks, errors and notices."""

    exchange = "okx"

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_inst: dict[str, str] = {}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._by_inst[native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._by_inst.pop(native(symbol), None)

    def _request(self, op: str, symbols: Sequence[str]) -> str:
        args = [{"channel": "tickers", "instId": native(symbol)} for symbol in symbols]
        return orjson.dumps({"op": op, "args": args}).decode()

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("subscribe", part) for part in chunks(symbols, _PER_REQUEST)]

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return [self._request("unsubscribe", part) for part in chunks(symbols, _PER_REQUEST)]

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if frame in ("pong", b"pong"):
            return []
        msg = orjson.loads(frame)
        if "data" in msg and msg["arg"]["channel"] == "tickers":
            now = time.time()
            return [
                self._ticker(symbol, item, now)
                for item in msg["data"]
                if (symbol := self._by_inst.get(item["instId"])) is not None
            ]
        event = msg.get("event")
        if event == "subscribe":
            symbol = self._by_inst.get(msg["arg"]["instId"])
            if symbol is not None:
                self.events.append(Subscribed(symbol))
            return []
        if event == "error":
            self._refused(msg)
            return []
        if event == "notice":
            if str(msg.get("code")) == _UPGRADE_NOTICE:
                self.events.append(
                    ReconnectRequested(f"{_UPGRADE_NOTICE}: {msg.get('msg', 'service upgrade')}")
                )
            return []
        if event in ("unsubscribe", "channel-conn-count"):
            return []
        return self.junk_frame()

    def _refused(self, msg: dict[str, Any]) -> None:
        """An error names the refused instrument only in its text; one naming none (a
        malformed request) cannot be pinned on a symbol, so it blames nobody."""
        text = str(msg.get("msg", ""))
        reason = f"{msg.get('code', '')}: {text}"
        for inst_id in sorted(set(_INST_ID.findall(text))):
            symbol = self._by_inst.get(inst_id)
            if symbol is not None:
                self.events.append(Rejected(symbol, reason))

    @staticmethod
    def _ticker(symbol: str, item: dict[str, Any], now: float) -> Ticker:
        """Every push is a full object: the fields read here are all required (a push without
        one is junk, so it never overwrites a stored value with null).  Built positionally, in the
        Ticker's field order: keyword arguments cost more than the float conversions."""
        change, change_pct = _change(item["last"], item["open24h"])
        volume = item["volCcy24h"] if ":" in symbol else item["vol24h"]
        return Ticker(
            "okx",
            symbol,
            float(item["last"]),
            float(item["bidPx"]),
            float(item["askPx"]),
            float(item["bidSz"]),
            float(item["askSz"]),
            float(volume),
            float(item["high24h"]),
            float(item["low24h"]),
            change,
            change_pct,
            int(item["ts"]) / 1000.0,
            now,
        )


class OKX(Exchange):
    """OKX v5: spot ``BTC/USDT`` ↔ ``BTC-USDT``; linear swaps ``BTC/USDT:USDT`` ↔ ``BTC-USDT-SWAP``;
    inverse swaps ``BTC/USD:BTC`` ↔ ``BTC-USD-SWAP``."""

    name = "okx"
    lacks = ("mark_price", "index_price", "funding_rate", "next_funding_ts", "open_interest", "sequence")
    decoder_class = OKXDecoder
    fake = "tickerd.testing.okx:FakeOKX"
    sample_symbols = ("BTC/USDT", "ETH/USDT:USDT")
    feeds = "v5 `tickers`"
    symbol_forms = (
        "`BTC/USDT` ↔ `BTC-USDT`, `BTC/USDT:USDT` ↔ `BTC-USDT-SWAP`, `BTC/USD:BTC` ↔ `BTC-USD-SWAP`"
    )
    lacks_note = "swap sizes are in contracts"
    url = "wss://ws.okx.com:8443/ws/v5/public"
    max_symbols_per_connection = 200
    #: Text ping well inside OKX's 30 s no-push limit.
    keepalive = Keepalive(interval=20.0, frame="ping")
    reconnect_request = True
    send_interval = 0.1

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        base, quote, settle = split_unified(symbol)
        linear = settle == quote and quote != "USD"  # OKX's USD-quoted swaps are inverse
        inverse = settle == base and quote == "USD"
        if settle is not None and not (linear or inverse):
            raise ValueError(
                f"{symbol!r}: okx serves spot BASE/QUOTE and perpetual swaps BASE/QUOTE:QUOTE "
                "(linear) or BASE/USD:BASE (inverse)"
            )
