"""A fleet member's record in Redis: who it is and what it collects and has delivered.

Every member writes its own record (``RedisLayout.fleet_member``), expiring with its lease, so
a member that dies leaves the fleet by itself.  The others read the records for two things: who
is alive (the assignment is computed over them) and what each has *delivered*, which is when a
member that lost a symbol may let it go (make-before-break: :mod:`tickerd.fleet.share`).
``tickerd status`` reads the same class back.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from tickerd import snapshots


@attrs.frozen
class MemberExchange:
    """One exchange as a member collects it."""

    #: The symbols it subscribes now (sorted).
    subscribed: tuple[str, ...] = ()
    #: The subscribed symbols it has written to Redis since it subscribed them (sorted): a member
    #: that handed a symbol over waits for the new owner to list it here.
    delivered: tuple[str, ...] = ()
    #: Its share by the rendezvous over the members it sees (sorted): the subscribed symbols less
    #: those it keeps for a handover.  Over the live members, these make up the desired set.
    assigned: tuple[str, ...] = ()


@attrs.frozen
class Member:
    """A member's record (stored as JSON through :data:`tickerd.snapshots.converter`)."""

    instance: str
    host: str
    pid: int
    #: Epoch seconds when the member started.
    started: float
    #: Epoch seconds of this write: the age of the member's lease is ``now - time``.
    time: float
    #: Seconds the record outlives its last write (``fleet.lease``).
    lease: float
    #: ``fleet.replicas`` as this member is configured.
    replicas: int
    #: Departing (SIGTERM): it owns nothing any more and drops each symbol once it is delivered.
    leaving: bool = False
    version: str = ""
    exchanges: Mapping[str, MemberExchange] = attrs.field(factory=dict)

    def delivers(self, exchange: str, symbol: str) -> bool:
        """Whether this member lists ``symbol`` of ``exchange`` as delivered."""
        collected = self.exchanges.get(exchange)
        return collected is not None and symbol in collected.delivered


def dumps(member: Member) -> bytes:
    """A record as stored."""
    return snapshots.dumps(member)


def loads(raw: bytes | str, key: str) -> Member:
    """A stored record back (:class:`~tickerd.snapshots.UnreadableRecord` if it is not one)."""
    return snapshots.loads(raw, Member, key)
