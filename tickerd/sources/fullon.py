"""fullon compatibility: an existing fullon database as the source, read as it is.

fullon keeps exchange accounts per user: ``exchanges(ex_id, uid, cat_ex_id, name, active)``
points at the exchange catalogue ``cat_exchanges(cat_ex_id, name)``, and the symbols to follow
are listed per catalogue exchange in ``symbols(symbol_id, symbol, cat_ex_id, …)``.  tickerd
collects, for the admin user (``users.mail`` = ``database.admin_mail``, ``ADMIN_MAIL``), every
symbol of each exchange that user has an active account on.

Nothing is written to fullon's database, so there are no triggers to LISTEN to: the tables are
re-read every ``database.refresh`` seconds and the daemon applies the difference.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tickerd.sources.database import DatabaseSource, Row, SchemaError

_TABLES = ("users", "exchanges", "cat_exchanges", "symbols")

_READ = """
SELECT DISTINCT c.name, s.symbol, NULL::text
FROM users u
JOIN exchanges e ON e.uid = u.uid AND e.active
JOIN cat_exchanges c ON c.cat_ex_id = e.cat_ex_id
LEFT JOIN symbols s ON s.cat_ex_id = c.cat_ex_id
WHERE u.mail = %s
ORDER BY 1, 2
"""


class FullonSource(DatabaseSource):
    kind = "fullon"

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        missing = [
            t for t in _TABLES if conn.execute("SELECT to_regclass(%s)", [t]).fetchone() in (None, (None,))
        ]
        if missing:
            raise SchemaError(f"{self.where} is not a fullon database (no table {', '.join(missing)})")
        if conn.execute("SELECT 1 FROM users WHERE mail = %s", [self.settings.admin_mail]).fetchone() is None:
            mail = self.settings.admin_mail
            raise SchemaError(f"no fullon user {mail!r} in {self.where} (set ADMIN_MAIL to the admin's mail)")

    def _read(self, conn: psycopg.Connection[Any]) -> list[Row]:
        return conn.execute(_READ, [self.settings.admin_mail]).fetchall()
