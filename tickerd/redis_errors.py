"""Redis errors that waiting will not cure.

A Redis that is not there (connection refused, a timeout, a server still loading its data,
too many clients) comes back by itself: tickerd waits for it, holding the latest values.  A
server that is there but refuses tickerd does not: a wrong password or none (``WRONGPASS``,
``NOAUTH``), a user without the right (``NOPERM``), a database the server does not have
(``DB index is out of range``), a replica that takes no writes, or something that is not
Redis at all on the port.  At start-up such a refusal ends ``tickerd`` (exit 2, the reason in
the message: :mod:`tickerd.embedded`); while running, the writer logs it as an ERROR, health
shows it, and the writer keeps retrying, since a rotated password may be put right.

This module imports only redis-py: ``tickerd status`` uses it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.exceptions import AuthorizationError, ClusterDownError, InvalidResponse, TryAgainError


def refusal(error: BaseException, url: str | None = None) -> str | None:
    """Why Redis refuses tickerd, or ``None`` when ``error`` only says it is not there (yet).

    redis-py files authentication errors under ``ConnectionError`` and a cluster that is
    electing a master under ``ResponseError``, so the classes alone do not sort them: the
    outage-like ones are picked out first.  Given the ``url`` used, a server that wants a
    password the URL lacks is named as such (redis-py's words for it vary with the handshake).
    """
    if isinstance(error, redis.AuthenticationError):
        if url is not None and not urlsplit(url).password:
            return "authentication failed (the server requires a password and the URL has none)"
        return f"authentication failed ({error})"
    if isinstance(error, AuthorizationError):
        return f"not authorized ({error})"
    if isinstance(error, (TryAgainError, ClusterDownError)):
        return None  # a cluster failing over: it answers again by itself
    if isinstance(error, InvalidResponse):
        return f"not a Redis server: it does not speak the Redis protocol ({error})"
    if isinstance(error, redis.ResponseError):
        return str(error)
    return None
