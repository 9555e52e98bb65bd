"""Where the subscriptions come from: the TOML file, tickerd's PostgreSQL tables, or fullon's.

A source turns what it reads into the *desired set* (exchange → :class:`ExchangeConfig` with
its symbols and settings) and hands it to :meth:`TickerDaemon.apply`, which changes only what
differs.  So the daemon does not know where subscriptions come from, and a source does not know
about connections: a database change and a TOML start-up take the same path.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import trio

from tickerd.config import Config
from tickerd.snapshots import SourceSnapshot

if TYPE_CHECKING:
    from tickerd.daemon import TickerDaemon


class Source(abc.ABC):
    """Runs in the daemon's root nursery and keeps the daemon's subscriptions as it says."""

    #: Shown in health and the start-up log line.
    kind: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config
        #: Called on every state change (the daemon turns it into a health change).
        self.listeners: list[Callable[[Source], None]] = []

    @abc.abstractmethod
    async def run(self, daemon: TickerDaemon, *, task_status: trio.TaskStatus[None]) -> None:
        """Apply the first desired set, report ``started``, then follow changes (if any).

        A configuration problem found before ``started`` (a missing schema) is raised as
        :class:`~tickerd.config.ConfigError`; after it, nothing is raised.
        """

    def snapshot(self) -> SourceSnapshot:
        """What ``TickerDaemon.health().source`` shows."""
        return SourceSnapshot(kind=self.kind)

    def _changed(self) -> None:
        for listener in self.listeners:
            listener(self)


class TomlSource(Source):
    """The ``[exchanges]`` tables of the configuration: applied once at start."""

    kind = "toml"

    async def run(self, daemon: TickerDaemon, *, task_status: trio.TaskStatus[None]) -> None:
        await daemon.apply({name: ex for name, ex in self.config.exchanges.items() if ex.enabled})
        task_status.started()


def for_config(config: Config) -> Source:
    """The source ``config`` asks for: PostgreSQL when ``database.url`` is set, else TOML."""
    if config.database.url is None:
        return TomlSource(config)
    if config.database.mode == "fullon":
        from tickerd.sources.fullon import FullonSource  # psycopg is imported only when used

        return FullonSource(config)
    from tickerd.sources.postgres import PostgresSource

    return PostgresSource(config)


__all__ = ["Source", "TomlSource", "for_config"]
