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
from collections.abc import Iterable, Sequence

from tickerd.fleet.member import Member


def _seeds(instances: Sequence[str]) -> list[tuple[str, hashlib.blake2b]]:
    """Each member's hash, fed with its id once: a weight is then a copy and one update
    (~0.5 µs, where hashing the whole text again costs three times that)."""
    return [(i, hashlib.blake2b(f"{i}\0".encode(), digest_size=8)) for i in instances]


def _ranked(seeds: Sequence[tuple[str, hashlib.blake2b]], key: bytes, replicas: int) -> tuple[str, ...]:
    """The ``replicas`` members of highest weight for ``key``, highest first (equal weights, a
    one-in-2^64 event, by the higher id).  Digests compare as bytes in the order of the
    big-endian numbers they are."""
    weighed = []
    for instance, seed in seeds:
        digest = seed.copy()
        digest.update(key)
        weighed.append((digest.digest(), instance))
    if replicas == 1 and weighed:
        return (max(weighed)[1],)
    weighed.sort(reverse=True)
    return tuple(instance for _, instance in weighed[:replicas])


def _key(exchange: str, symbol: str) -> bytes:
    return f"{exchange}\0{symbol}".encode()


def weight(instance: str, exchange: str, symbol: str) -> int:
    """``instance``'s weight for ``(exchange, symbol)``: 64 bits of BLAKE2b of
    ``instance \\0 exchange \\0 symbol``, the same in every process."""
    key = f"{instance}\0{exchange}\0{symbol}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def owners(instances: Sequence[str], exchange: str, symbol: str, replicas: int) -> tuple[str, ...]:
    """The ``replicas`` instances that collect ``(exchange, symbol)``, highest weight first
    (all of them when there are fewer)."""
    return _ranked(_seeds(instances), _key(exchange, symbol), replicas)


def assign(
    instances: Sequence[str], keys: Iterable[tuple[str, str]], replicas: int
) -> dict[tuple[str, str], tuple[str, ...]]:
    """:func:`owners` of every ``(exchange, symbol)`` of ``keys``, each member's id hashed once."""
    seeds = _seeds(instances)
    return {key: _ranked(seeds, _key(*key), replicas) for key in keys}


def eligible(members: Iterable[Member]) -> list[str]:
    """The ids of the members that may own symbols (those not leaving), sorted."""
    return sorted(member.instance for member in members if not member.leaving)
