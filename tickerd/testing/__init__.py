"""Fake exchange servers for tests, benchmarks and the offline demo.

Each fake is a trio-websocket server on 127.0.0.1 that speaks its exchange's real protocol
(acks, heartbeats, pings, errors, real frame shapes) and can misbehave on command.
"""

from __future__ import annotations

from tickerd import exchanges
from tickerd.testing.binance import FakeBinance
from tickerd.testing.kraken import FakeKraken
from tickerd.testing.server import FakeConnection, FakeExchange


def fake_for(name: str) -> type[FakeExchange]:
    """The fake server class of exchange ``name``, as its adapter names it (``Exchange.fake``)."""
    cls: type[FakeExchange] = exchanges.load_class(exchanges.get(name).fake)
    return cls


__all__ = ["FakeBinance", "FakeConnection", "FakeExchange", "FakeKraken", "fake_for"]
