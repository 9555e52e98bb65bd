"""Who collects what: rendezvous (highest-random-weight) hashing over the live members.

Every member computes the same owners from the same member list, so there is no leader and no
vote.  Each (member, exchange, symbol) gets a weight from a stable hash (BLAKE2b, not Python's
salted ``hash``, which differs between processes); a symbol's owners are the ``replicas`` members
of highest weight.  A member joining takes from every other member only the symbols on which it
now weighs most (~1/N of them), and a member leaving hands its own out among the others: nothing
else moves.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence

from tickerd.fleet.member import Member


def weight(instance: str, exchange: str, symbol: str) -> int:
    """``instance``'s weight for ``(exchange, symbol)``: 64 bits of BLAKE2b, the same everywhere."""
    key = f"{instance}\0{exchange}\0{symbol}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def owners(instances: Sequence[str], exchange: str, symbol: str, replicas: int) -> tuple[str, ...]:
    """The ``replicas`` instances that collect ``(exchange, symbol)``, highest weight first
    (all of them when there are fewer); equal weights are ordered by id."""
    if len(instances) <= replicas:
        return tuple(sorted(instances, key=lambda i: (-weight(i, exchange, symbol), i)))
    ranked = heapq.nsmallest(replicas, ((-weight(i, exchange, symbol), i) for i in instances))
    return tuple(instance for _, instance in ranked)


def eligible(members: Iterable[Member]) -> list[str]:
    """The ids of the members that may own symbols (those not leaving), sorted."""
    return sorted(member.instance for member in members if not member.leaving)
