"""Where the subscriptions come from: the TOML file, tickerd's PostgreSQL tables, or fullon's.

A source turns what it reads into the *desired set* (exchange → :class:`ExchangeConfig` with
its symbols and settings) and hands it to the daemon's ``apply`` (:class:`Subscriptions`),
which changes only what differs.  So the daemon does not know where subscriptions come from,
and a source does not know about connections: a database change and a TOML start-up take
the same path.
"""

from __future__ import annotations

import trio

from tickerd.config import Config
from tickerd.sources.base import Source, Subscriptions


class TomlSource(Source):
    """The ``[exchanges]`` tables of the configuration: applied once at start."""

    kind = "toml"

    async def run(self, daemon: Subscriptions, *, task_status: trio.TaskStatus[None]) -> None:
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


__all__ = ["Source", "Subscriptions", "TomlSource", "for_config"]
