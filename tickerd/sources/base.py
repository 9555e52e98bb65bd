"""What every subscription source is, and the little it needs of the daemon.

Kept apart from :mod:`tickerd.sources` (which picks a source and imports the database ones
lazily) so that the database sources can build on :class:`Source` without importing the
package that imports them, and typed against :class:`Subscriptions` rather than the daemon
that runs them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar, Protocol

import trio

from tickerd.broadcast import Broadcast
from tickerd.config import Config, ExchangeConfig
from tickerd.snapshots import SourceSnapshot


class Subscriptions(Protocol):
    """The daemon, as a source sees it (``TickerDaemon`` is one)."""

    async def apply(self, desired: Mapping[str, ExchangeConfig]) -> None:
        """Make the running set equal ``desired``, touching only what differs."""

    def symbols(self) -> dict[str, list[str]]:
        """The subscribed symbols of every exchange."""


class Source(abc.ABC):
    """Runs in the daemon's root nursery and keeps the daemon's subscriptions as it says."""

    #: Shown in health and the start-up log line.
    kind: ClassVar[str]

    def __init__(self, config: Config) -> None:
        self.config = config
        #: Fired on every state change (the daemon turns it into a health change).
        self.changed: Broadcast[Source] = Broadcast()

    @abc.abstractmethod
    async def run(self, daemon: Subscriptions, *, task_status: trio.TaskStatus[None]) -> None:
        """Apply the first desired set, report ``started``, then follow changes (if any).

        A configuration problem found before ``started`` (a missing schema) is raised as
        :class:`~tickerd.config.ConfigError`; after it, nothing is raised.
        """

    def snapshot(self) -> SourceSnapshot:
        """What ``TickerDaemon.health().source`` shows."""
        return SourceSnapshot(kind=self.kind)

    def _changed(self) -> None:
        self.changed.fire(self)
