"""The symbols a fake exchange holds, by the exchange's own name for them.

Fakes of exchanges that subscribe by native name (``btcusdt@bookTicker``) map each requested name
back to the unified symbol it stands for.  Walking every market per requested name costs a client
subscribing thousands of symbols seconds of the fake's loop (every push waits meanwhile);
:class:`NativeIndex` answers from a dict instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping


class NativeIndex:
    """Native name → unified symbol, over some of a fake's symbol tables, the first table first
    (its markets before its rejected symbols), each in insertion order.

    The tables are the fake's own dicts, which only grow (a market is invented on first use, a
    rejection added by :meth:`FakeExchange.reject`): each lookup indexes just the keys added since
    the last one.  ``native`` returns ``None`` for a symbol that has no name here.
    """

    def __init__(self, native: Callable[[str], str | None], *tables: Mapping[str, object]) -> None:
        self._native = native
        self._tables = tables
        self._indexes: list[dict[str, str]] = [{} for _ in tables]
        self._indexed = [0] * len(tables)

    def get(self, name: str) -> str | None:
        """The symbol named ``name``, or ``None`` if no table holds one."""
        for position, (table, index) in enumerate(zip(self._tables, self._indexes, strict=True)):
            if len(table) != self._indexed[position]:
                for symbol in itertools.islice(table, self._indexed[position], None):
                    native = self._native(symbol)
                    if native is not None:
                        index.setdefault(native, symbol)
                self._indexed[position] = len(table)
            found = index.get(name)
            if found is not None:
                return found
        return None
