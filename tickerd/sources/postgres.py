"""tickerd's own PostgreSQL tables as the source, followed live through LISTEN/NOTIFY.

The source LISTENs before it reads, so no committed change can fall between a read and the
notifications; on a notification it re-reads everything (two small tables) and the daemon
applies the difference.  Re-reading instead of interpreting payloads means a burst of changes
costs one read, and a lost notification costs nothing but time: a full re-read also runs every
``database.refresh`` seconds.
"""

from __future__ import annotations

from typing import Any

import psycopg
import trio
from psycopg import sql

from tickerd.config import Config
from tickerd.sources import tables
from tickerd.sources.database import DatabaseSource, Link, Row, SchemaError


class PostgresSource(DatabaseSource):
    kind = "postgres"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.schema = config.database.schema

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        found = tables.version(conn, self.schema)
        if found is None:
            raise SchemaError(f'no tickerd schema "{self.schema}" in {self.where}: run tickerd db init')
        if found < tables.LATEST:
            raise SchemaError(
                f'the tickerd schema "{self.schema}" in {self.where} is at version {found}, '
                f"this tickerd needs {tables.LATEST}: run tickerd db init"
            )
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(tables.channel(self.schema))))

    def _read(self, conn: psycopg.Connection[Any]) -> list[Row]:
        return tables.enabled_rows(conn, self.schema)

    async def _wait_for_change(self, link: Link) -> None:
        """Return on the first notification (those that came during the read included) or
        when the periodic re-read is due; a lost connection raises here at once."""
        deadline = trio.current_time() + self.settings.refresh
        conn = link.conn
        while True:
            # Non-blocking: what psycopg kept from earlier calls plus what the socket holds.
            received = sum(1 for _ in conn.notifies(timeout=0))
            if received:
                self.notifications += received
                return
            with trio.move_on_at(deadline) as timer:
                await trio.lowlevel.wait_readable(conn.fileno())
            if timer.cancelled_caught:
                return
