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

#: Names served from :mod:`tickerd.daemon` on first use (see :func:`__getattr__`).
_DAEMON_NAMES = frozenset({"TickerDaemon", "serve"})
#: Names served from :mod:`tickerd.config` on first use: package-level name → name there.
_CONFIG_NAMES = {"Config": "Config", "ConfigError": "ConfigError", "load_config": "load"}


def __getattr__(name: str) -> object:
    """The daemon's and the configuration's names, importing their module on first use: the
    commands that only read Redis (``status``, ``watch``) import this package without the
    daemon, and programs that read tickers (:mod:`tickerd.client`) without the configuration,
    which loads the exchanges and their transports (trio).  Plain import statements, so that
    the import-cycle check (tests/test_imports.py) sees these dependencies."""
    value: object
    if name in _DAEMON_NAMES:
        from tickerd import daemon

        value = getattr(daemon, name)
    elif name in _CONFIG_NAMES:
        from tickerd import config

        value = getattr(config, _CONFIG_NAMES[name])
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without coming here
    return value
