"""A level-free "something changed" signal that any number of tasks can wait for.

trio's :class:`~trio.Event` fires once; a state that changes again and again needs a fresh
event after every firing.  :class:`Broadcast` keeps that re-arming in one place, and also
calls plain callbacks for listeners that are not tasks (a record marked dirty, a wake-up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Wake every waiter and call every callback on :meth:`fire`; re-armed automatically."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._callbacks: list[Callable[[T], None]] = []

    def fire(self, value: T) -> None:
        """Announce a change: callbacks run now, waiting tasks are woken."""
        for callback in self._callbacks:
            callback(value)
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        """Return at the next :meth:`fire` after this call."""
        await self._event.wait()

    def connect(self, callback: Callable[[T], None]) -> None:
        """Call ``callback(value)`` on every :meth:`fire` (idempotent)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def connected(self, callback: Callable[[T], None]) -> bool:
        return callback in self._callbacks
