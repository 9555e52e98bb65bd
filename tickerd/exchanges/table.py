"""The README's exchange table, generated from the adapters' manifest fields.

    python -m tickerd.exchanges.table                   print the table
    python -m tickerd.exchanges.table --write README.md replace the table between its markers

The table is written from the adapters, never by hand: tests/test_docs.py fails when README.md's
block differs from :func:`table`, and names the command above to bring it up to date.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tickerd import exchanges
from tickerd.exchanges.base import Exchange

BEGIN = "<!-- exchanges-table -->"
END = "<!-- /exchanges-table -->"
COMMAND = "python -m tickerd.exchanges.table --write README.md"

_HEADER = (
    "| exchange | feeds used | symbol forms (unified ↔ native) | keepalive | open interest in "
    "| fields it cannot provide |\n"
    "|---|---|---|---|---|---|\n"
)


def _duration(seconds: float) -> str:
    """``82800.0`` → ``23 h``; whole days as days (``89 d``)."""
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g} d"
    return f"{seconds / 3600:g} h"


def _keepalive(adapter: Exchange) -> str:
    """What keeps a connection alive and fresh: the ping the loop sends, the adapter's own note
    (server heartbeats, answered pings), reconnect requests and the forced rotation, in that order."""
    parts = []
    if adapter.keepalive is not None:
        parts.append(f"sends `{adapter.keepalive.frame}` every {adapter.keepalive.interval:g} s")
    if adapter.keepalive_note:
        parts.append(adapter.keepalive_note)
    if adapter.reconnect_request:
        parts.append("honours the exchange's reconnect requests")
    if adapter.max_lifetime is not None:
        parts.append(f"rotates every {_duration(adapter.max_lifetime)}, before the exchange cuts it")
    return "; ".join(parts) or "—"


def _gaps(adapter: Exchange) -> str:
    """The fields the adapter lacks, then its note on partial gaps."""
    lacks = ", ".join(adapter.lacks) or "—"
    return f"{lacks} ({adapter.lacks_note})" if adapter.lacks_note else lacks


def _feeds(adapter: Exchange) -> str:
    """The channels used, and which of them supplies ``sequence``."""
    if not adapter.sequence_source:
        return adapter.feeds
    return f"{adapter.feeds}; `sequence` from {adapter.sequence_source}"


def _open_interest(adapter: Exchange) -> str:
    """The unit of ``open_interest``; spot-only venues have none to give."""
    if adapter.spot_only:
        return "— (spot only)"
    return adapter.open_interest_unit or "—"


def row(adapter: Exchange) -> str:
    cells = (
        adapter.name,
        _feeds(adapter),
        adapter.symbol_forms,
        _keepalive(adapter),
        _open_interest(adapter),
        _gaps(adapter),
    )
    return f"| {' | '.join(cells)} |\n"


def table() -> str:
    """The whole table, one row per registered exchange, in name order."""
    return _HEADER + "".join(row(exchanges.get(name)) for name in exchanges.names())


def split(text: str) -> tuple[str, str, str]:
    """``text`` around its marked block: ``(before, block, after)``, markers kept outside the block.

    ``ValueError`` when the markers are missing, so a moved or deleted marker is an error rather
    than a table silently appended elsewhere.
    """
    before, begin, rest = text.partition(f"{BEGIN}\n")
    block, end, after = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"no {BEGIN} … {END} block")
    return before + begin, block, end + after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tickerd.exchanges.table", description="Print the README's exchange table."
    )
    parser.add_argument(
        "--write", type=Path, metavar="FILE", help=f"replace the {BEGIN} block of FILE instead"
    )
    args = parser.parse_args(argv)
    if args.write is None:
        print(table(), end="")
        return 0
    before, _, after = split(args.write.read_text())
    args.write.write_text(before + table() + after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
