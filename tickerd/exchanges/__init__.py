"""Exchange adapters: one module per exchange, registered here by name."""

from __future__ import annotations

from tickerd.exchanges.base import Decoder, Exchange
from tickerd.exchanges.binance import Binance
from tickerd.exchanges.kraken import Kraken

_REGISTRY: dict[str, type[Exchange]] = {cls.name: cls for cls in (Kraken, Binance)}


def names() -> list[str]:
    """The names of every supported exchange, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Exchange:
    """The adapter for ``name``; ``KeyError`` names the supported exchanges."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown exchange {name!r} (supported: {', '.join(names())})") from None


__all__ = ["Decoder", "Exchange", "get", "names"]
