"""Secrets never leave the process: the one function every message passes a URL through.

A Redis URL may carry a password (``redis://:secret@host:6379/0``) and an exchange ``url``
override may carry credentials or a token in its query (``wss://relay/ws?token=…``).  Logs,
``tickerd status`` (table, ``--json`` and its error lines), ``watch``, health records and
error messages show where tickerd connects, never with what: each such text goes through
:func:`redact` on its way out.  The PostgreSQL side names its database with
``tickerd.sources.database.describe`` (``host:port/dbname``), which never holds a secret.

:func:`redact` takes a bare URL or any text that contains URLs or ``key=value`` pairs (an
exception message, a libpq ``password=… host=…`` string), so a call site never has to pick
the URL out of a message first.
"""

from __future__ import annotations

import re

#: What replaces a secret.
MASK = "***"

#: A URL's scheme and authority (``scheme://userinfo@host:port``): the authority ends at the
#: path, query, fragment, whitespace or a quote.  The password is cut from the userinfo with
#: the same rule as :func:`urllib.parse.urlsplit` (the last ``@``, then the first ``:``), so
#: a password holding ``@`` is masked whole, as redis-py would read it.
_AUTHORITY = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<authority>[^/?#\s'\"<>]*)")

#: Names of query parameters (and libpq keywords) whose value is a credential: any name that
#: contains one of these words, in any case (``api_key``, ``X-Amz-Signature``, ``authToken``).
SENSITIVE_WORDS = ("password", "passwd", "pwd", "secret", "token", "key", "signature", "auth", "credential")

#: ``name=value`` where the name holds a sensitive word; the value runs to the next ``&``, ``#``,
#: ``;``, whitespace or quote, or is a libpq quoted value (``password='a b'``).
_PAIR = re.compile(
    r"(?P<name>[\w.-]*(?:" + "|".join(SENSITIVE_WORDS) + r")[\w.-]*=)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^&;#\s'\"<>]*)",
    re.IGNORECASE,
)


def _authority(match: re.Match[str]) -> str:
    userinfo, at, hostport = match["authority"].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not colon or not password:
        return match[0]
    return f"{match['scheme']}{user}:{MASK}{at}{hostport}"


def _pair(match: re.Match[str]) -> str:
    return f"{match['name']}{MASK}" if match["value"] else match[0]


def redact(text: str) -> str:
    """``text`` with every URL password and every credential-like ``name=value`` masked.

    >>> redact("redis://:hunter2@127.0.0.1:6379/0")
    'redis://:***@127.0.0.1:6379/0'
    >>> redact("wss://relay.example/ws?stream=btc&token=abc#x")
    'wss://relay.example/ws?stream=btc&token=***#x'
    """
    return _PAIR.sub(_pair, _AUTHORITY.sub(_authority, text))
