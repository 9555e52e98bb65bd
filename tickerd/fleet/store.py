"""The fleet's records in Redis, from blocking redis-py calls (callers use a worker thread).

Three keys per fleet, all in one Redis Cluster slot (the fleet name is their hash tag,
:meth:`~tickerd.layout.RedisLayout.fleet_member`): each member's record (expiring with its
lease), the set of member ids (an index, so reading the fleet is ``SMEMBERS`` plus one ``MGET``,
never a ``SCAN`` of the user's keyspace), and the announcement channel.  A member's write is one
script: the record, its id in the index and, when the record changed, the announcement, so the
others never hear of a change they cannot read yet.  The index may name members whose records
expired (a ``kill -9``); readers skip them and live members prune them.  No ``CONFIG SET``, no
keyspace notifications: expiry is noticed by reading.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson
from loguru import logger

from tickerd.fleet.member import Member, loads
from tickerd.layout import RedisLayout
from tickerd.snapshots import UnreadableRecord

if TYPE_CHECKING:
    from tickerd.topology import Client

#: KEYS: the record, the index; ARGV: the record's JSON, its expiry in ms, the member's id, the
#: channel and the announcement (empty: none).
_WRITE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""

#: KEYS: the record, the index; ARGV: the member's id, the channel, the announcement.  Returns
#: how many members the index still names.
_LEAVE = """
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return redis.call('SCARD', KEYS[2])
"""

#: KEYS: the index, then records; ARGV: their members' ids.  Drops from the index the ids whose
#: records are gone (checked here, atomically, so a member that just came back stays listed).
_PRUNE = """
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i - 1]) end
end
return 1
"""


#: KEYS: records.  Each one's value (false: none) and its time to live in ms: a reader then knows
#: when the first record expires unless renewed, and reads again right then.
_READ = """
local found = {}
for i, key in ipairs(KEYS) do
    found[i] = {redis.call('GET', key) or false, redis.call('PTTL', key)}
end
return found
"""


def announcement(event: str, instance: str) -> bytes:
    """What a member publishes: ``{"event": "join"|"leave"|"change", "instance": id}``."""
    return orjson.dumps({"event": event, "instance": instance})


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode()


def _ids(client: Client, layout: RedisLayout, name: str) -> list[str]:
    """The ids the index names, sorted."""
    return sorted(_text(raw) for raw in client.smembers(layout.fleet_members(name)))


def _parse(
    layout: RedisLayout, name: str, ids: Sequence[str], raws: Sequence[bytes | str | None]
) -> tuple[list[Member], list[str]]:
    """The records read for ``ids`` (in their order), and the ids without a record."""
    members: list[Member] = []
    gone: list[str] = []
    for instance, raw in zip(ids, raws, strict=True):
        if raw is None:
            gone.append(instance)
            continue
        try:
            members.append(loads(raw, layout.fleet_member(name, instance)))
        except UnreadableRecord as exc:  # another program's value, or garbage: not a member
            logger.warning("fleet {name}: {error}", name=name, error=str(exc))
    return members, gone


def read_members(client: Client, layout: RedisLayout, name: str) -> list[Member]:
    """The live members of fleet ``name``, sorted by id (blocking; reads only)."""
    ids = _ids(client, layout, name)
    if not ids:
        return []
    return _parse(layout, name, ids, client.mget([layout.fleet_member(name, i) for i in ids]))[0]


class MemberStore:
    """One member's view of its fleet's keys: write its record, read everyone's, leave."""

    def __init__(self, client: Client, layout: RedisLayout, name: str, instance: str) -> None:
        self.client = client
        self.layout = layout
        self.name = name
        self.instance = instance
        self.channel = layout.fleet_channel(name)
        self._keys = [layout.fleet_member(name, instance), layout.fleet_members(name)]
        self._write = client.register_script(_WRITE)
        self._leave = client.register_script(_LEAVE)
        self._prune = client.register_script(_PRUNE)
        self._read = client.register_script(_READ)

    def write(self, record: bytes, lease: float, event: str | None) -> None:
        """Store this member's record for ``lease`` seconds; announce ``event`` with it."""
        message = b"" if event is None else announcement(event, self.instance)
        millis = str(max(1, round(lease * 1000)))
        self._write(keys=self._keys, args=[record, millis, self.instance, self.channel, message])

    def read(self) -> tuple[list[Member], float]:
        """Every live member's record, sorted by id, and the seconds until the first of the
        others' records expires unless renewed (``inf``: no other); ids whose records expired
        leave the index."""
        ids = _ids(self.client, self.layout, self.name)
        if not ids:
            return [], math.inf
        found = self._read(keys=[self.layout.fleet_member(self.name, i) for i in ids])
        members, gone = _parse(self.layout, self.name, ids, [raw or None for raw, _ in found])
        if gone:
            self.prune(gone)
        expiries = [
            ttl / 1000
            for i, (raw, ttl) in zip(ids, found, strict=True)
            if raw and ttl >= 0 and i != self.instance
        ]
        return members, min(expiries, default=math.inf)

    def prune(self, instances: Sequence[str]) -> None:
        keys = [self.layout.fleet_members(self.name)]
        keys += [self.layout.fleet_member(self.name, instance) for instance in instances]
        self._prune(keys=keys, args=list(instances))

    def leave(self) -> int:
        """Delete this member's record and announce it; how many members the index still names."""
        remaining: int = self._leave(
            keys=self._keys, args=[self.instance, self.channel, announcement("leave", self.instance)]
        )
        return remaining
