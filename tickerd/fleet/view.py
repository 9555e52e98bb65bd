"""The fleet as ``tickerd status`` shows it: who collects what, and what nobody collects.

Built from the member records alone (:func:`survey` does no I/O), so it is what any machine
that reaches the Redis sees.  Ownership is read from what each member *subscribes*, not from the
rendezvous: a symbol its owners have not picked up yet, or that a dead member's record still
claims, is exactly what an operator needs to see.  A symbol on more members than ``replicas``
is normal for a moment (a handover keeps the old owner until the new one delivers); one owned
by nobody is not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import attrs

from tickerd.fleet.member import Member


@attrs.frozen
class Ownership:
    """One exchange's desired symbols against what the members subscribe."""

    #: How many symbols the fleet is to collect.
    desired: int
    #: Desired symbols no member subscribes (sorted).
    unowned: tuple[str, ...]
    #: Symbols on more members than ``replicas`` → those members (sorted).
    over: Mapping[str, tuple[str, ...]]


@attrs.frozen
class FleetView:
    """A fleet at one moment: its live members and, per exchange, its ownership."""

    name: str
    replicas: int
    members: tuple[Member, ...]
    exchanges: Mapping[str, Ownership]

    @property
    def unowned(self) -> int:
        return sum(len(ownership.unowned) for ownership in self.exchanges.values())

    @property
    def over(self) -> int:
        return sum(len(ownership.over) for ownership in self.exchanges.values())


def survey(
    name: str,
    members: Sequence[Member],
    replicas: int,
    desired: Mapping[str, Collection[str]] | None = None,
) -> FleetView:
    """The view of fleet ``name`` from its live ``members``.

    ``desired`` (exchange → symbols) is the set to collect; ``None`` when the reader cannot know
    it (subscriptions from a database ``status`` does not read): the members' rendezvous shares
    (``assigned``) then stand for it, the desired set as the fleet sees it.
    """
    holders: dict[str, dict[str, list[str]]] = {}
    shares: dict[str, set[str]] = {}
    for member in members:
        for exchange, collected in member.exchanges.items():
            shares.setdefault(exchange, set()).update(collected.assigned)
            for symbol in collected.subscribed:
                holders.setdefault(exchange, {}).setdefault(symbol, []).append(member.instance)
    wanted = shares if desired is None else {e: set(s) for e, s in desired.items()}
    exchanges = {}
    for exchange in sorted(wanted.keys() | holders.keys()):
        held = holders.get(exchange, {})
        exchanges[exchange] = Ownership(
            desired=len(wanted.get(exchange, ())),
            unowned=tuple(sorted(wanted.get(exchange, set()) - held.keys())),
            over={s: tuple(sorted(ids)) for s, ids in sorted(held.items()) if len(ids) > replicas},
        )
    return FleetView(name, replicas, tuple(members), exchanges)
