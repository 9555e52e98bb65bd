"""tickerd: keeps the latest ticker of every configured (exchange, symbol) in Redis.

Embed it with ``trio.run(tickerd.serve, tickerd.load_config())``, or run ``python -m tickerd``.
"""

from __future__ import annotations

from tickerd.config import Config, ConfigError
from tickerd.config import load as load_config
from tickerd.daemon import TickerDaemon, serve
from tickerd.model import Ticker
from tickerd.version import __version__

__all__ = ["Config", "ConfigError", "Ticker", "TickerDaemon", "__version__", "load_config", "serve"]
