"""Fake exchange servers for tests, benchmarks and the offline demo.

Each fake is a trio-websocket server on 127.0.0.1 that speaks its exchange's real protocol
(acks, heartbeats, pings, errors, real frame shapes) and can misbehave on command.
"""

from __future__ import annotations

from tickerd.testing.binance import FakeBinance
from tickerd.testing.kraken import FakeKraken
from tickerd.testing.server import FakeConnection, FakeExchange

FAKES: dict[str, type[FakeExchange]] = {cls.name: cls for cls in (FakeKraken, FakeBinance)}

__all__ = ["FAKES", "FakeBinance", "FakeConnection", "FakeExchange", "FakeKraken"]
