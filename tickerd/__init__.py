"""tickerd: keeps the latest ticker of every configured (exchange, symbol) in Redis.

Embed it with ``trio.run(tickerd.serve, tickerd.load_config())``, or run ``python -m tickerd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tickerd.config import Config, ConfigError
from tickerd.config import load as load_config
from tickerd.model import Ticker
from tickerd.version import __version__

if TYPE_CHECKING:
    from tickerd.daemon import TickerDaemon, serve

__all__ = ["Config", "ConfigError", "Ticker", "TickerDaemon", "__version__", "load_config", "serve"]

#: Names served from :mod:`tickerd.daemon` on first use (see :func:`__getattr__`).
_DAEMON_NAMES = frozenset({"TickerDaemon", "serve"})


def __getattr__(name: str) -> object:
    """``tickerd.serve`` and ``tickerd.TickerDaemon``, importing the daemon on first use: the
    commands that only read Redis (``status``, ``watch``) import this package without it."""
    if name in _DAEMON_NAMES:
        from tickerd import daemon

        value: object = getattr(daemon, name)
        globals()[name] = value  # later lookups find it without coming here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
