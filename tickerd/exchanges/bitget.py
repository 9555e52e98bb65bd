"""Bitget v2 public websocket (``wss://ws.bitget.com/v2/ws/public``): the ``ticker`` channel of
spot and of the USDT-, USDC- and coin-margined perpetuals.

Documentation: https://www.bitget.com/api-doc/common/websocket-intro (connection limits,
``ping``/``pong``, subscribe and unsubscribe), https://www.bitget.com/api-doc/spot/websocket/public/Tickers-Channel
(spot ``ticker``), https://www.bitget.com/api-doc/contract/websocket/public/Tickers-Channel
(futures ``ticker``), https://www.bitget.com/api-doc/contract/market/Get-Ticker (the product
types ``USDT-FUTURES``, ``COIN-FUTURES``, ``USDC-FUTURES``) and the "Websocket error response
format change" of 23 Aug 2023 in the changelog of https://bitgetlimited.github.io/apidoc/en/spot/
(errors carry the refused ``arg`` and the ``op``).

Symbols.  Every subscription arg names a product type (``instType``) and an instrument
(``instId``), and the same instrument name means another market under another type: ``BTCUSDT``
is spot BTC/USDT under ``SPOT`` and the BTC/USDT:USDT perpetual under ``USDT-FUTURES``.  So the
decoder keeps one native → unified map per product type, and one connection carries markets of
every type.  Native names: spot ``BTC/USDT`` ↔ ``BTCUSDT``; ``USDT-FUTURES`` ``BTC/USDT:USDT`` ↔
``BTCUSDT``; ``USDC-FUTURES`` ``BTC/USDC:USDC`` ↔ ``BTCPERP``; ``COIN-FUTURES`` ``BTC/USD:BTC`` ↔
``BTCUSD``.  Dated futures (coin-margined quarterlies) are not served.

Fields.  Every push is a full object (the spot page names ``snapshot`` as the only action; the
futures page names ``snapshot`` or ``update``, but its example, like every push seen, carries
every field), so nothing is merged and each field the pages list is required.  Futures pushes
carry the derivative fields beside the spot ones: ``markPrice``, ``indexPrice``,
``fundingRate`` (one funding period's rate as a fraction), ``nextFundingTime`` (ms) and
``holdingAmount`` (open interest; the pages give no unit, and Bitget sizes every contract,
coin-margined ones included, in its base coin, as it does ``bidSz``/``askSz`` and ``baseVolume``).
``change24h`` is the 24 h change as a fraction ("0.01 means 1%"); the absolute change is
``lastPr − open24h``.  The ticker carries no sequence number.

Protocol.  ``{"op":"subscribe","args":[…]}`` (and ``unsubscribe``) is answered per arg by
``{"event":"subscribe","arg":{…}}``; a refused arg by ``{"event":"error","arg":{…},"code":…,
"msg":…,"op":"subscribe"}`` (the changelog's example: code 30003, "instType:SP,channel:ticker,
instId:BTC-USDT Symbol not exists", in v1's names; v2 servers word it "instType:SPOT,channel:
ticker,instId:… doesn't exist"), so a refusal is read from its ``arg``, never from the code or
the text, and an error without one (a malformed request) blames nobody.  A request's args may
total at most 4096 bytes; a connection may send at most 10 messages a second (pings included) and
240 subscription requests an hour, so symbols are batched into as few requests as fit.

Keepalive.  Bitget closes a connection that sent no text ``ping`` for 2 minutes and asks for one
every 30 s, answered by a text ``pong`` (not JSON, not junk).  The adapter pings every 20 s, as
for OKX: the pongs are then the frames by which a quiet connection passes the default 30 s
silence watchdog.  Bitget also closes every connection after 24 hours; the loop rotates before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from tickerd.exchanges.base import Decoder, Exchange, Keepalive, Rejected, Subscribed, market
from tickerd.model import Ticker

#: Bitget's limit on the total length of one request's args, in bytes.
_ARGS_BYTES = 4096
SPOT = "SPOT"
#: The product types the adapter serves.
_INST_TYPES = (SPOT, "USDT-FUTURES", "USDC-FUTURES", "COIN-FUTURES")
_FORMS = "bitget serves spot BASE/QUOTE and the perpetuals BASE/USDT:USDT, BASE/USDC:USDC and BASE/USD:BASE"


def inst_type(symbol: str) -> str:
    """The product type of ``symbol``'s market: ``SPOT``, ``USDT-FUTURES``, ``USDC-FUTURES`` or
    ``COIN-FUTURES`` (``ValueError`` for a market Bitget does not list)."""
    parts = market(symbol)
    if parts.spot:
        return SPOT
    if parts.expiry is None:
        if parts.settle == parts.quote and parts.quote in ("USDT", "USDC"):
            return f"{parts.quote}-FUTURES"
        if parts.inverse and parts.quote == "USD":
            return "COIN-FUTURES"
    raise ValueError(f"{symbol!r}: {_FORMS}")


def native(symbol: str) -> str:
    """The instrument name of ``symbol`` under its product type (the module docstring lists the
    forms): ``BTCUSDT``, ``BTCPERP``, ``BTCUSD``."""
    parts = market(symbol)
    if parts.settle == "USDC":
        return parts.base + "PERP"
    return parts.base + parts.quote


def arg(symbol: str) -> dict[str, str]:
    """The subscription arg of ``symbol``'s ticker."""
    return {"instType": inst_type(symbol), "channel": "ticker", "instId": native(symbol)}


class BitgetDecoder(Decoder):
    """Decodes ``ticker`` pushes of every product type, per-arg acks, errors and ``pong``."""

    exchange = "bitget"

    def __init__(self, symbols: Iterable[str]) -> None:
        #: instType → instId → unified symbol (a push of another product type is junk).
        self._markets: dict[str, dict[str, str]] = {inst_type: {} for inst_type in _INST_TYPES}
        super().__init__(symbols)

    def track(self, symbol: str) -> None:
        super().track(symbol)
        self._markets[inst_type(symbol)][native(symbol)] = symbol

    def untrack(self, symbol: str) -> None:
        super().untrack(symbol)
        self._markets[inst_type(symbol)].pop(native(symbol), None)

    def _symbol(self, arg: dict[str, Any]) -> str | None:
        """The tracked symbol an ack's or error's ``arg`` speaks for."""
        if arg.get("channel") != "ticker":
            return None
        return self._markets.get(str(arg.get("instType")), {}).get(str(arg.get("instId")))

    # -- requests --------------------------------------------------------------------------

    def _requests(self, op: str, symbols: Sequence[str]) -> list[str]:
        """Requests whose args stay within :data:`_ARGS_BYTES`."""
        frames: list[str] = []
        batch: list[bytes] = []
        size = 1  # the args' JSON: the brackets and a comma after every arg but the last
        for symbol in symbols:
            encoded = orjson.dumps(arg(symbol))
            if batch and size + len(encoded) + 1 > _ARGS_BYTES:
                frames.append(self._request(op, batch))
                batch, size = [], 1
            batch.append(encoded)
            size += len(encoded) + 1
        if batch:
            frames.append(self._request(op, batch))
        return frames

    @staticmethod
    def _request(op: str, args: list[bytes]) -> str:
        return f'{{"op":"{op}","args":[{b",".join(args).decode()}]}}'

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("subscribe", symbols)

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return self._requests("unsubscribe", symbols)

    # -- frames ----------------------------------------------------------------------------

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if frame == "pong" or frame == b"pong":
            return []
        msg = orjson.loads(frame)
        data = msg.get("data")
        if data is not None:
            where = msg["arg"]
            names = self._markets.get(where["instType"])
            if where["channel"] != "ticker" or names is None:
                return self.junk_frame()
            return self._tickers(data, names, where["instType"] != SPOT)
        event = msg.get("event")
        if event == "subscribe":
            symbol = self._symbol(msg["arg"])
            if symbol is not None:
                self.events.append(Subscribed(symbol))
            return []
        if event == "error":
            symbol = self._symbol(msg.get("arg") or {})
            if symbol is not None:
                self.events.append(Rejected(symbol, f"{msg.get('code', '')}: {msg.get('msg', '')}"))
            return []
        if event == "unsubscribe":
            return []
        return self.junk_frame()

    @staticmethod
    def _tickers(data: list[dict[str, Any]], names: dict[str, str], derivative: bool) -> list[Ticker]:
        """The tickers of one push: the book's top, last price and 24 h statistics, and for
        futures (``derivative``) mark, index, funding and open interest too; a spot push's
        derivative fields are not read.  Built positionally, in the Ticker's field order."""
        now = time.time()
        tickers = []
        for item in data:
            symbol = names.get(item["instId"])
            if symbol is None:
                continue
            last = item["lastPr"]
            fields = (
                float(last),
                float(item["bidPr"]),
                float(item["askPr"]),
                float(item["bidSz"]),
                float(item["askSz"]),
                float(item["baseVolume"]),
                float(item["high24h"]),
                float(item["low24h"]),
                float(Decimal(last) - Decimal(item["open24h"])),
                float(Decimal(item["change24h"]).scaleb(2)),
                int(item["ts"]) / 1000.0,
                now,
            )
            if derivative:
                tickers.append(
                    Ticker(
                        "bitget",
                        symbol,
                        *fields,
                        float(item["markPrice"]),
                        float(item["indexPrice"]),
                        float(item["fundingRate"]),
                        int(item["nextFundingTime"]) / 1000.0,
                        float(item["holdingAmount"]),
                    )
                )
            else:
                tickers.append(Ticker("bitget", symbol, *fields))
        return tickers


class Bitget(Exchange):
    """Bitget v2: spot ``BTC/USDT`` ↔ ``SPOT`` ``BTCUSDT``; perpetuals ``BTC/USDT:USDT`` ↔
    ``USDT-FUTURES`` ``BTCUSDT``, ``BTC/USDC:USDC`` ↔ ``USDC-FUTURES`` ``BTCPERP`` and
    ``BTC/USD:BTC`` ↔ ``COIN-FUTURES`` ``BTCUSD``."""

    name = "bitget"
    url = "wss://ws.bitget.com/v2/ws/public"
    decoder_class = BitgetDecoder
    #: One ``ticker`` channel a symbol; Bitget allows 1000 channels a connection but recommends
    #: fewer than 50 for stability.
    max_symbols_per_connection = 49
    #: Bitget closes every connection after 24 hours.
    max_lifetime = 23 * 3600.0
    #: Text ping well inside Bitget's 2 minutes (and the 30 s silence watchdog, see above).
    keepalive = Keepalive(interval=20.0, frame="ping")
    #: At most 10 messages a second, pings included.
    send_interval = 0.1
    lacks = ("sequence",)
    fake = "tickerd.testing.bitget:FakeBitget"
    sample_symbols = ("BTC/USDT", "ETH/USDT:USDT", "BTC/USD:BTC", "BTC/USDC:USDC")
    feeds = "v2 `ticker` of `SPOT`, `USDT-FUTURES`, `USDC-FUTURES` and `COIN-FUTURES` (one connection)"
    symbol_forms = (
        "`BTC/USDT` ↔ `SPOT` `BTCUSDT`, `BTC/USDT:USDT` ↔ `USDT-FUTURES` `BTCUSDT`, "
        "`BTC/USDC:USDC` ↔ `USDC-FUTURES` `BTCPERP`, `BTC/USD:BTC` ↔ `COIN-FUTURES` `BTCUSD`"
    )
    lacks_note = "no dated futures; `ticker` carries no sequence number"
    open_interest_unit = "base asset (`holdingAmount`)"

    def check_symbol(self, symbol: str) -> None:
        super().check_symbol(symbol)
        inst_type(symbol)  # raises for a market Bitget does not list
