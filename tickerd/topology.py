"""Which Redis tickerd talks to, and the one place its redis-py clients are made.

Users run Redis three ways, and ``redis.url`` names each:

* one server: ``redis://[[USER]:PASSWORD@]HOST:PORT/DB``, ``rediss://…`` (TLS), ``unix://PATH``
  (redis-py's own URL forms);
* a Redis Cluster: ``redis+cluster://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]``
  (``rediss+cluster://`` for TLS): any reachable nodes; the client learns the others and the
  slot map from them, and follows ``MOVED``/``ASK`` and failovers;
* a master watched by Sentinel:
  ``redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB]``
  (``rediss+sentinel://`` for TLS): the hosts are the Sentinels (port 26379 when left out), the
  credentials the master's; ``?sentinel_username=…&sentinel_password=…`` authenticate to the
  Sentinels when they want it.

A URL scheme rather than a ``cluster = true`` key: the URL is what users already pass around
(``REDIS_URL``), and it travels whole to ``status``, ``watch`` and readers of
:mod:`tickerd.client` without a second setting to keep in step.  Query options of redis-py's
URLs (``?ssl_ca_certs=…``, ``?socket_timeout=…``) apply to every form.

:func:`client` and :func:`async_client` give redis-py's own client for each: ``Redis``,
``RedisCluster`` (its pipelines split by slot; ``PUBLISH`` on any node reaches subscribers on
every node, so pub/sub needs nothing more), or ``Sentinel.master_for`` (a ``Redis`` whose
connections ask the Sentinels where the master is and drop a master that was demoted).
Everything in tickerd that reads Redis or takes its lease gets its client here; the writer,
which speaks RESP itself, reads the same :class:`Topology` (:mod:`tickerd.writer.connection`).

This module imports only redis-py, attrs and :mod:`tickerd.redact`: readers (:mod:`tickerd.client`) use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.connection import parse_url
from redis.exceptions import RedisClusterException

from tickerd.redact import redact

#: A client of any topology: a cluster's is not a ``redis.Redis``, but offers the same
#: commands tickerd uses (multi-key ones split by slot).
Client = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

#: What a call on a client of any topology raises when Redis is away or refuses: redis-py's
#: cluster client raises a bare :class:`RedisClusterException` (not a ``RedisError``) when no
#: node of the cluster answers.
ERRORS = (redis.RedisError, RedisClusterException)

#: The URL forms, as error messages and help texts name them.
FORMS = (
    "redis://HOST:PORT/DB (port 1-65535), rediss://…, unix://…, redis+cluster://HOST:PORT[,HOST:PORT…] "
    "or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB]"
)

Kind = Literal["server", "cluster", "sentinel"]
_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("server", False),
    "rediss": ("server", True),
    "unix": ("server", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT: dict[Kind, int] = {"server": 6379, "cluster": 6379, "sentinel": 26379}
#: Query options that are the Sentinels' own, not the master's.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


@attrs.frozen
class Topology:
    """A parsed ``redis.url``: its kind, the nodes it names (a cluster's seeds, the Sentinels;
    empty for one server, whose URL redis-py reads itself), the master's name under Sentinel,
    and the connection options (credentials, database, TLS, timeouts) in redis-py's words."""

    kind: Kind
    url: str = attrs.field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    #: For the server(s) that hold the data.
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
    #: For the Sentinels (sockets and TLS as the master's, credentials their own).
    sentinel_options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


def parse(url: str) -> Topology:
    """``url`` as a :class:`Topology`; :class:`ValueError` naming what is wrong (without the
    URL itself: the caller quotes it redacted)."""
    parts = urlsplit(url)
    known = _SCHEMES.get(parts.scheme)
    if known is None:
        raise ValueError(f"unknown scheme {parts.scheme!r}")
    kind, tls = known
    if kind == "server":
        return Topology(kind, url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = tuple(_node(host, _DEFAULT_PORT[kind]) for host in hosts.split(","))
    query = dict(parse_qsl(parts.query))
    sentinel_auth = {name: query.pop(name) for name in _SENTINEL_OPTIONS if name in query}
    path = [segment for segment in parts.path.split("/") if segment]
    if kind == "cluster":
        if path not in ([], ["0"]):
            raise ValueError("a cluster has database 0 only: no /DB or a path after the hosts")
        service, db = None, None
    else:
        if not 1 <= len(path) <= 2:
            raise ValueError("expected the master's name after the Sentinels: …/MASTERNAME[/DB]")
        service, db = path[0], (path[1] if len(path) == 2 else None)
    # redis-py reads the options of a one-server URL: the first node stands in for the server.
    single = f"{'rediss' if tls else 'redis'}://{userinfo}{at}{nodes[0][0]}:{nodes[0][1]}"
    options = {
        key: value
        for key, value in parse_url(single + (f"/{db}" if db else "") + f"?{urlencode(query)}").items()  # type: ignore[no-untyped-call]
        if key not in ("host", "port", "connection_class")
    }
    if tls:
        options["ssl"] = True
    sentinel_options = {key: value for key, value in options.items() if key.startswith(("socket_", "ssl"))}
    sentinel_options.update({key.removeprefix("sentinel_"): value for key, value in sentinel_auth.items()})
    return Topology(kind, url, nodes, service, options, sentinel_options)


def describe(url: str) -> str:
    """``url`` as ``tickerd config check`` names it: redacted, with what it points at."""
    topology = parse(url)
    shown = redact(url)
    count = len(topology.nodes)
    if topology.kind == "cluster":
        return f"Cluster {shown} ({count} seed node{'s' if count > 1 else ''})"
    if topology.kind == "sentinel":
        return f"master {topology.service!r} via {count} Sentinel{'s' if count > 1 else ''} {shown}"
    return shown


def _node(text: str, default_port: int) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[IPV6][:PORT]`` as (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError("a node without a host")
    if not port:
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not 1-65535")
    return host, int(port)


def client(url: str, **options: Any) -> Client:
    """redis-py's client for ``url``, any topology; ``options`` (timeouts, say) go to it as
    to ``redis.Redis.from_url``."""
    topology = parse(url)
    if topology.kind == "server":
        return redis.Redis.from_url(url, **options)
    if topology.kind == "cluster":
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in topology.nodes]  # type: ignore[no-untyped-call]
        try:  # redis-py's cluster client asks the nodes for the slot map at once
            return redis.cluster.RedisCluster(startup_nodes=nodes, **{**topology.options, **options})
        except RedisClusterException as exc:
            raise redis.ConnectionError(f"no node of the Redis Cluster answers ({exc})") from None
    assert topology.service is not None
    master: redis.Redis = sentinel(topology, **options).master_for(topology.service)  # type: ignore[no-untyped-call]
    return master


def sentinel(topology: Topology, **options: Any) -> redis.sentinel.Sentinel:
    """redis-py's Sentinel client of a ``redis+sentinel://`` topology (the writer asks it
    where the master is)."""
    timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
    return redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(topology.nodes),
        sentinel_kwargs={**topology.sentinel_options, **timeouts},
        **{**topology.options, **options},
    )


def async_client(url: str, **options: Any) -> AsyncClient:
    """:func:`client` for asyncio (redis-py's asyncio clients)."""
    topology = parse(url)
    if topology.kind == "server":
        return redis.asyncio.Redis.from_url(url, **options)
    if topology.kind == "cluster":
        nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in topology.nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **{**topology.options, **options})
    assert topology.service is not None
    timeouts = {key: value for key, value in options.items() if key.startswith("socket_")}
    watchers = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(topology.nodes),
        sentinel_kwargs={**topology.sentinel_options, **timeouts},
        **{**topology.options, **options},
    )
    master: redis.asyncio.Redis = watchers.master_for(topology.service)
    return master
