"""Binance.US spot: the Binance spot protocol at its own host, sharing Binance's decoder.

Grounded in the Binance.US API documentation, *Web Socket Streams*
(https://docs.binance.us/#websocket-streams, mirrored as ``web-socket-streams.md`` in
github.com/binance-us/binance-us-api-docs): base endpoint ``wss://stream.binance.us:9443``,
raw streams on ``/ws``, live ``SUBSCRIBE``/``UNSUBSCRIBE`` answered ``{"result":null,"id":…}``,
``<symbol>@bookTicker`` (real time) and ``<symbol>@ticker`` (24 h rolling statistics, every
second) in the very frame shapes Binance sends, so :class:`~tickerd.exchanges.binance.BinanceDecoder`
decodes them unchanged.

Where Binance.US differs from Binance, and what it changes here:

* The server pings every 3 minutes (Binance: every 20 s) and drops a client whose pong has not
  come within 10 minutes.  The transport answers the pings, but a quiet market's
  ``@bookTicker`` may send nothing for longer than the silence watchdog waits, so the adapter
  sends the documented ``GET_PROPERTY`` request every 20 s, whose small answer proves the
  connection alive (as the Binance futures adapters do, whose server pings as seldom).
* 5 inbound messages a second, pings and pongs included, and 1024 streams a connection: the
  same limits as Binance, so the same ``send_interval`` and symbols per connection.
* A connection lasts 24 hours, as on Binance; the documentation mentions no ``serverShutdown``
  event, so the adapter does not claim a reconnect request (``reconnect_request = False``:
  connections rotate at ``max_lifetime``).  The shared decoder would still honour one.
* Unknown symbols are accepted silently, as on Binance (``rejects_unknown = False``).
"""

from __future__ import annotations

from tickerd.exchanges.binance import GET_PROPERTY_KEEPALIVE, Binance, BinanceDecoder


class BinanceUsDecoder(BinanceDecoder):
    """Binance's spot decoder under Binance.US's name (the name its tickers carry)."""

    exchange = "binanceus"


class BinanceUs(Binance):
    """Binance.US spot; unified ``BTC/USDT`` ↔ native ``BTCUSDT``, as on Binance."""

    name = "binanceus"
    decoder_class = BinanceUsDecoder
    fake = "tickerd.testing.binanceus:FakeBinanceUs"
    sample_symbols = ("BTC/USDT", "ETH/USD")
    keepalive_note = "answers server ping frames (every 3 min)"
    url = "wss://stream.binance.us:9443/ws"
    #: Id 0 is never a subscription's (:class:`~tickerd.exchanges.binance.BinanceStreamsDecoder`).
    keepalive = GET_PROPERTY_KEEPALIVE
    reconnect_request = False
