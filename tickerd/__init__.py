"""tickerd: keeps the latest ticker of every configured (exchange, symbol) in Redis.

Embed it with ``trio.run(tickerd.serve, tickerd.load_config())``, or run ``python -m tickerd``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tickerd.model import Ticker
from tickerd.version import __version__

if TYPE_CHECKING:
    from tickerd.config import Config, ConfigError
    from tickerd.config import load as load_config
    from tickerd.daemon import TickerDaemon, serve

__all__ = ["Config", "ConfigError", "Ticker", "TickerDaemon", "__version__", "load_config", "serve"]

#: Names served on first use (see :func:`__getattr__`): package-level name → (module, name there).
_LAZY = {
    "TickerDaemon": ("tickerd.daemon", "TickerDaemon"),
    "serve": ("tickerd.daemon", "serve"),
    "Config": ("tickerd.config", "Config"),
    "ConfigError": ("tickerd.config", "ConfigError"),
    "load_config": ("tickerd.config", "load"),
}


def __getattr__(name: str) -> object:
    """The daemon's and the configuration's names, importing their module on first use: the
    commands that only read Redis (``status``, ``watch``) import this package without the
    daemon, and programs that read tickers (:mod:`tickerd.client`) without the configuration,
    which loads the exchanges and their transports (trio)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value: object = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later lookups find it without coming here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
