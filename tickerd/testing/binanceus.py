"""A fake Binance.US ``/ws`` server: the fake Binance protocol with Binance.US's differences.

Binance.US pings every 3 minutes rather than every 20 s, and documents no ``serverShutdown``
event, so this fake has no reconnect request (:meth:`FakeExchange.request_reconnect` raises, as
for every exchange without one).  Everything else (acks by id, errors, silent acceptance of
unknown symbols, the 5 messages a second limit, the frame shapes) is Binance's.
"""

from __future__ import annotations

from typing import Any

from tickerd.testing.binance import FakeBinance
from tickerd.testing.server import FakeConnection


class FakeBinanceUs(FakeBinance):
    name = "binanceus"

    def __init__(self, *, ping_interval: float = 180.0, **kwargs: Any) -> None:
        super().__init__(ping_interval=ping_interval, **kwargs)

    def reconnect_frame(self, conn: FakeConnection) -> str:
        raise NotImplementedError("Binance.US documents no reconnect request")
