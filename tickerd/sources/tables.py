"""tickerd's own tables in PostgreSQL: their migrations and every query on them.

Two tables in their own schema (``tickerd`` by default, so they never meet another
application's ``exchanges`` or ``symbols``)::

    exchanges (name PRIMARY KEY, enabled, url)           -- url: optional websocket override
    symbols   (exchange → exchanges.name, symbol, enabled) -- unified symbols: BTC/USDT, BTC/USDT:USDT

A statement-level trigger on each table sends ``NOTIFY <schema>_config`` when it changes, so a
running daemon hears of every committed change (one notification per transaction and table).

Migrations are numbered and never edited once released.  :func:`init` applies those a
database has not seen, in order, in one transaction under an advisory lock: running it twice,
or from two hosts at once, is harmless, and a daemon reading meanwhile sees the old schema or
the new one, never half of it.
"""

from __future__ import annotations

from typing import Any, LiteralString

import attrs
import psycopg
from psycopg import sql

from tickerd.sources.database import Row


@attrs.frozen
class Migration:
    version: int
    description: str
    #: SQL with ``{schema}`` (an identifier) and ``{channel}`` (a string literal).
    statements: LiteralString


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "exchanges, symbols and change notifications",
        """
        CREATE TABLE {schema}.exchanges (
            name text PRIMARY KEY,
            enabled boolean NOT NULL DEFAULT true,
            url text
        );
        CREATE TABLE {schema}.symbols (
            exchange text NOT NULL REFERENCES {schema}.exchanges (name)
                ON UPDATE CASCADE ON DELETE CASCADE,
            symbol text NOT NULL,
            enabled boolean NOT NULL DEFAULT true,
            PRIMARY KEY (exchange, symbol)
        );
        CREATE FUNCTION {schema}.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON {schema}.exchanges FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_change({channel});
        CREATE TRIGGER notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON {schema}.symbols FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_change({channel});
        """,
    ),
)

#: The schema version this tickerd reads.
LATEST = MIGRATIONS[-1].version


def channel(schema: str) -> str:
    """The NOTIFY channel of ``schema``'s tables (one per schema, so several tickerd schemas
    can share a database)."""
    return f"{schema}_config"


def _sql(text: LiteralString, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema), channel=sql.Literal(channel(schema)))


def version(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The schema's migration version; ``None`` when ``tickerd db init`` never ran there."""
    row = conn.execute("SELECT to_regclass(%s)", [f'"{schema}".migrations']).fetchone()
    if row is None or row[0] is None:
        return None
    row = conn.execute(_sql("SELECT coalesce(max(version), 0) FROM {schema}.migrations", schema)).fetchone()
    return 0 if row is None else int(row[0])


def init(conn: psycopg.Connection[Any], schema: str) -> tuple[int, list[Migration]]:
    """Create or upgrade ``schema``; returns the version found and the migrations applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tickerd migrations {schema}"])
        conn.execute(_sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        conn.execute(
            _sql(
                """CREATE TABLE IF NOT EXISTS {schema}.migrations (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )""",
                schema,
            )
        )
        found = version(conn, schema) or 0
        applied = [m for m in MIGRATIONS if m.version > found]
        for migration in applied:
            conn.execute(_sql(migration.statements, schema))
            conn.execute(
                _sql("INSERT INTO {schema}.migrations (version, description) VALUES (%s, %s)", schema),
                [migration.version, migration.description],
            )
    return found, applied


def enabled_rows(conn: psycopg.Connection[Any], schema: str) -> list[Row]:
    """Every enabled exchange with each of its enabled symbols (a row with symbol ``None``
    for an enabled exchange that has none)."""
    query = _sql(
        """SELECT e.name, s.symbol, e.url
        FROM {schema}.exchanges e
        LEFT JOIN {schema}.symbols s ON s.exchange = e.name AND s.enabled
        WHERE e.enabled
        ORDER BY e.name, s.symbol""",
        schema,
    )
    return conn.execute(query).fetchall()


def all_rows(
    conn: psycopg.Connection[Any], schema: str
) -> list[tuple[str, bool, str | None, str | None, bool | None]]:
    """Every exchange and symbol, enabled or not: (exchange, enabled, url, symbol, enabled)."""
    query = _sql(
        """SELECT e.name, e.enabled, e.url, s.symbol, s.enabled
        FROM {schema}.exchanges e
        LEFT JOIN {schema}.symbols s ON s.exchange = e.name
        ORDER BY e.name, s.symbol""",
        schema,
    )
    return conn.execute(query).fetchall()


def add_symbol(conn: psycopg.Connection[Any], schema: str, exchange: str, symbol: str) -> bool:
    """List ``symbol`` on ``exchange`` (the exchange is listed, enabled, if it was not);
    ``False`` if it was already listed (its enabled state is left as it is)."""
    with conn.transaction():
        conn.execute(
            _sql("INSERT INTO {schema}.exchanges (name) VALUES (%s) ON CONFLICT DO NOTHING", schema),
            [exchange],
        )
        cursor = conn.execute(
            _sql(
                "INSERT INTO {schema}.symbols (exchange, symbol) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                schema,
            ),
            [exchange, symbol],
        )
        return cursor.rowcount == 1


def remove_symbol(conn: psycopg.Connection[Any], schema: str, exchange: str, symbol: str) -> bool:
    """Unlist ``symbol``; ``False`` if it was not listed.  The exchange row (and its url) stays."""
    cursor = conn.execute(
        _sql("DELETE FROM {schema}.symbols WHERE exchange = %s AND symbol = %s", schema), [exchange, symbol]
    )
    return cursor.rowcount == 1


def set_enabled(
    conn: psycopg.Connection[Any], schema: str, exchange: str, symbol: str | None, enabled: bool
) -> bool:
    """Enable or disable one symbol, or (``symbol`` ``None``) a whole exchange; ``False`` if
    there is no such row."""
    if symbol is None:
        query = _sql("UPDATE {schema}.exchanges SET enabled = %s WHERE name = %s", schema)
        cursor = conn.execute(query, [enabled, exchange])
    else:
        query = _sql("UPDATE {schema}.symbols SET enabled = %s WHERE exchange = %s AND symbol = %s", schema)
        cursor = conn.execute(query, [enabled, exchange, symbol])
    return cursor.rowcount == 1


def set_url(conn: psycopg.Connection[Any], schema: str, exchange: str, url: str | None) -> bool:
    """Point ``exchange`` at another websocket URL (``None``: back to the default)."""
    cursor = conn.execute(
        _sql("UPDATE {schema}.exchanges SET url = %s WHERE name = %s", schema), [url, exchange]
    )
    return cursor.rowcount == 1
