"""The latest ticker of every (exchange, symbol) seen, and its table: what ``tickerd watch`` and
the status page show.

The terminal view fills a :class:`Board` from Redis (the stored hashes, then pub/sub), the
status page from the daemon's own written batches; both draw the same :meth:`Board.table`, so
a price is formatted, and a ticker judged fresh or stale, in one place.  Tickers are kept as
:class:`~tickerd.model.Ticker` objects: a record read from Redis is turned into one by the
layout (:func:`~tickerd.layout.record_ticker`, either layout), and a written batch holds them
already, so taking it costs the daemon a dict store per ticker and nothing is formatted until
something is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from tickerd.layout import Record, record_ticker
from tickerd.model import Removal, Ticker


def price(value: float | None) -> str:
    """A price that reads well at any magnitude (BTC at 64,000.50, PEPE at 1.234e-05)."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return f"{value:.6g}" if value == 0 or abs(value) >= 1e-4 else f"{value:.3e}"


def funding(rate: float | None) -> str:
    """One period's funding rate in percent, signed (shorts pay longs when negative)."""
    return "-" if rate is None else f"{rate * 100:+.4f}%"


def until_then(when: float | None, now: float) -> str:
    """Time left until ``when`` (epoch s): when the next funding is paid."""
    if when is None:
        return "-"
    return "now" if when <= now else "in " + age(when - now)


def amount(value: float | None) -> str:
    """An amount (open interest) in whole units with thousands separators, small ones as prices."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else price(value)


def age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


#: The derivative columns: the heading and how the cell is made from a ticker and the time.
_DERIVATIVE_COLUMNS: tuple[tuple[str, Callable[[Ticker, float], str]], ...] = (
    ("MARK", lambda t, now: price(t.mark_price)),
    ("INDEX", lambda t, now: price(t.index_price)),
    ("FUNDING", lambda t, now: funding(t.funding_rate)),
    ("NEXT FUNDING", lambda t, now: until_then(t.next_funding_ts, now)),
    ("OPEN INT", lambda t, now: amount(t.open_interest)),
)


@attrs.frozen
class Row:
    """One ticker's line: its cells (as :attr:`Table.columns` name them) and whether it is stale."""

    exchange: str
    symbol: str
    cells: tuple[str, ...]
    stale: bool


@attrs.frozen
class Table:
    """The board at one moment: column headings, then one row per ticker, sorted."""

    columns: tuple[str, ...]
    rows: tuple[Row, ...]


class Board:
    """The latest ticker of every (exchange, symbol) seen, and how it is tabled.

    ``derivatives``: show the derivative columns (mark, index, funding, next funding, open
    interest) always (``True``), never (``False``), or once a shown ticker has a mark price or
    a funding rate (``None``), so a spot-only view stays as narrow as it was.
    """

    def __init__(
        self, stale_after: float, exchanges: list[str] | None = None, derivatives: bool | None = None
    ) -> None:
        self.stale_after = stale_after
        self.derivatives = derivatives
        self.exchanges = set(exchanges or ())
        self.tickers: dict[tuple[str, str], Ticker] = {}
        self.status = "status: waiting for the first health read"
        self.updates = 0

    def update(self, record: Record) -> None:
        """Take a record as stored in Redis or published (either layout)."""
        self.put(record_ticker(record))

    def put(self, ticker: Ticker) -> None:
        if self.exchanges and ticker.exchange not in self.exchanges:
            return
        self.tickers[ticker.exchange, ticker.symbol] = ticker
        self.updates += 1

    def take(self, batch: Mapping[tuple[str, str], Ticker | Removal]) -> None:
        """Take a batch the daemon wrote: its tickers replace the held ones, a removed symbol
        leaves the board."""
        for key, item in batch.items():
            if isinstance(item, Removal):
                self.tickers.pop(key, None)
            else:
                self.tickers[key] = item
        self.updates += len(batch)

    def _with_derivatives(self) -> bool:
        if self.derivatives is not None:
            return self.derivatives
        return any(t.mark_price is not None or t.funding_rate is not None for t in self.tickers.values())

    def table(self, now: float) -> Table:
        """Every ticker's bid, ask, last (and the derivative columns), its age and whether it
        is ``stale_after`` old at ``now``."""
        extra = _DERIVATIVE_COLUMNS if self._with_derivatives() else ()
        columns = ("EXCHANGE", "SYMBOL", "BID", "ASK", "LAST", *(name for name, _ in extra), "AGE")
        rows = []
        for (exchange, symbol), ticker in sorted(self.tickers.items()):
            seconds = max(0.0, now - ticker.received_ts)
            cells = (
                exchange,
                symbol,
                price(ticker.bid),
                price(ticker.ask),
                price(ticker.last),
                *(cell(ticker, now) for _, cell in extra),
                age(seconds),
            )
            rows.append(Row(exchange, symbol, cells, seconds >= self.stale_after))
        return Table(columns, tuple(rows))

    def lines(self, now: float) -> list[str]:
        """The table as text: a header, then one line per ticker ending in ``fresh`` or ``STALE``."""
        table = self.table(now)
        cells = [table.columns, *(row.cells for row in table.rows)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(table.columns))]
        marks = ["", *("STALE" if row.stale else "fresh" for row in table.rows)]
        lines = []
        for line, mark in zip(cells, marks, strict=True):
            aligned = [
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            lines.append("  ".join([*aligned, mark]).rstrip())
        if not self.tickers:
            lines.append("(no tickers in Redis yet)")
        return lines
