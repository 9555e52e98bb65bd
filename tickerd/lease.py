"""The lease on a key prefix: one daemon owns a prefix at a time.

Two daemons on one prefix would overwrite each other's heartbeat and health records, and a
failed start would clean up records that are not its own.  So before it connects anything or
writes anything, a daemon takes ``{prefix}tickerd:lease`` (:meth:`RedisLayout.lease`):
``SET NX PX`` with a value naming its host, pid and a random token.  A second daemon finds the
key taken and stops (:class:`LeaseHeld`, exit 2) naming the holder.  The holder renews the
expiry every third of it; a daemon killed with ``kill -9`` stops renewing and its lease expires,
so a successor can start after at most one expiry.

Renewal and release compare the stored value with the holder's own in a Lua script (atomic),
so a holder that was paused past its expiry can neither extend nor delete a successor's lease:
it learns that it lost the prefix (:class:`LeaseLost`) and stops.  A lease that vanished (Redis
restarted empty) is simply taken again by the renewal.

The lease has its own Redis connection and calls it from a worker thread (once every third of
the expiry), not through the writer's thread: renewal must not queue behind a batch of tickers
or the writer's retry backoff (a lease that expired because the writer was busy would let a
second daemon in), and the writer must not wait on the lease.

The members of a fleet (:mod:`tickerd.fleet`) hold the lease jointly: each claims it with the
same value, naming the fleet and nothing else, so the claim script renews it for all of them,
while a single daemon, or a fleet of another name, finds it held by someone else and stops, as a
second daemon does.  The last member to leave releases it; the others leave it to the fleet.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import orjson
import trio
from loguru import logger
from redis.commands.core import Script

from tickerd import topology
from tickerd.backoff import Backoff
from tickerd.layout import RedisLayout
from tickerd.redact import redact
from tickerd.redis_errors import refusal

T = TypeVar("T")

#: Take the lease when the key is free, renew it when it is ours; return the holder's value
#: either way (``SET NX PX`` inside the script, so taking, renewing and reading are one atomic step).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return current
end
if not current then
    redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
    return ARGV[1]
end
return current
"""

#: Delete the lease only while it is still ours (a successor's lease is left alone).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

#: While Redis does not answer at start: retry soon, then every 2 s (as the writer does).
RETRY = Backoff(first=0.05, cap=2.0, jitter=False)
#: Seconds the release may take at most (a round trip takes a millisecond), and never past the
#: end of the shutdown grace (:attr:`PrefixLease.release_by`): unreleased, the lease expires.
RELEASE_TIMEOUT = 0.5


class LeaseError(Exception):
    """The prefix belongs to another daemon; the message names it (exit status 2)."""


class LeaseHeld(LeaseError):
    """At start: another daemon holds the prefix."""


class LeaseLost(LeaseError):
    """While running: another daemon took the prefix after this one's lease expired."""


def describe(raw: bytes | None) -> str:
    """Who holds a lease, from its stored value: ``tickerd pid 4711 on vm``, ``fleet 'prod'``."""
    try:
        value = orjson.loads(raw or b"")
        if "fleet" in value:
            return f"fleet {value['fleet']!r}"
        return f"tickerd pid {value['pid']} on {value['host']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"an unknown holder ({raw!r})"


class PrefixLease:
    """The lease of one daemon (or of the members of fleet ``fleet``) on its prefix:
    :meth:`acquire`, :meth:`keep`, :meth:`release`."""

    def __init__(self, url: str, layout: RedisLayout, expiry: float, *, fleet: str | None = None) -> None:
        self.key = layout.lease()
        self.prefix = layout.prefix
        self.expiry = expiry
        self._url = url
        #: True while this daemon holds the lease (what it may clean up depends on it).
        self.held = False
        #: Trio time by which the release must be over (the end of the shutdown grace).
        self.release_by = math.inf
        self.value = orjson.dumps(
            {"fleet": fleet}
            if fleet is not None
            else {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": secrets.token_hex(16),
                "since": time.time(),
            }
        )
        # Shorter than a renewal period, so an unanswered renewal is retried before expiry.
        timeout = min(2.0, expiry / 3)
        self._timeout = timeout
        self._client: topology.Client | None = None

    def _script(self, source: str) -> Script:
        """``source`` registered with the lease's client, made on first use in the worker
        thread: a cluster's client asks its nodes for the slot map as it is made, and that
        waits like any other call while Redis is away."""
        if self._client is None:
            self._client = topology.client(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        return self._client.register_script(source)

    async def _call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread; abandoned on cancellation (its socket timeout ends it)."""
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)

    async def _claim_once(self) -> bytes:
        """Take or renew the lease; the holder's value (ours when it is held)."""
        millis = str(max(1, round(self.expiry * 1000)))
        holder: bytes = await self._call(
            lambda: self._script(_CLAIM)(keys=[self.key], args=[self.value, millis])
        )
        self.held = holder == self.value
        return holder

    async def acquire(self) -> None:
        """Take the lease, waiting while Redis does not answer; :class:`LeaseHeld` when another
        daemon holds it."""
        failures = 0
        while True:
            try:
                holder = await self._claim_once()
                break
            except topology.ERRORS as exc:
                reason = refusal(exc, self._url)
                if reason is not None:  # waiting would not help (a wrong password, NOPERM…)
                    raise LeaseError(
                        f"cannot take the lease on prefix {self.prefix!r}: Redis at {redact(self._url)} "
                        f"refuses tickerd: {redact(reason)}"
                    ) from None
                if not failures:
                    logger.warning(
                        "cannot take the lease on prefix {prefix!r} yet ({error}); nothing is connected "
                        "or written before it is taken",
                        prefix=self.prefix,
                        error=redact(str(exc)),
                    )
                failures += 1
                await trio.sleep(RETRY.delay(failures))
        if not self.held:
            raise LeaseHeld(
                f"prefix {self.prefix!r} is owned by {describe(holder)} (lease {self.key}); "
                "stop that daemon or use another redis.prefix"
            )
        logger.info("took the lease on prefix {prefix!r} ({key})", prefix=self.prefix, key=self.key)

    async def keep(self) -> None:
        """Renew every third of the expiry until cancelled; :class:`LeaseLost` once another
        daemon holds the prefix.  A renewal Redis does not answer is retried at the next third."""
        unanswered = False
        while True:
            await trio.sleep(self.expiry / 3)
            try:
                holder = await self._claim_once()
            except topology.ERRORS as exc:
                if not unanswered:
                    logger.warning(
                        "cannot renew the lease on prefix {prefix!r}: {error}",
                        prefix=self.prefix,
                        error=redact(str(exc)),
                    )
                unanswered = True
                continue
            unanswered = False
            if not self.held:
                raise LeaseLost(
                    f"lost the lease on prefix {self.prefix!r} to {describe(holder)} (this daemon did "
                    f"not renew it within {self.expiry:g} s); stopping without touching its records"
                )

    async def release(self, *, shared: bool = False) -> None:
        """Give the lease back if it is still ours (bounded: an unanswered release expires);
        ``shared``: other members of the fleet still hold it, so it stays theirs."""
        try:
            if self.held and not shared:
                self.held = False
                error = "no answer within the shutdown grace"
                deadline = min(trio.current_time() + RELEASE_TIMEOUT, self.release_by)
                with trio.move_on_at(deadline, shield=True):
                    try:
                        await self._call(lambda: self._script(_RELEASE)(keys=[self.key], args=[self.value]))
                        return
                    except topology.ERRORS as exc:
                        error = redact(str(exc))
                logger.warning(
                    "lease on prefix {prefix!r} not released ({error}); it expires within {s:g} s",
                    prefix=self.prefix,
                    error=error,
                    s=self.expiry,
                )
        finally:
            self.held = False
            if self._client is not None:
                self._client.close()
