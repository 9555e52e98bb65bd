"""tickerd's HTTP port (``tickerd run --metrics-port PORT``): the live status page at ``/``,
Prometheus's ``/metrics`` and ``/healthz``.

One small ASGI application (:class:`Site`) served by hypercorn's trio worker in the daemon's
own trio loop: no thread, and the page's server-sent event streams are trio tasks that wait on
the daemon's change signals like any other.  ``/metrics`` is prometheus-client's ASGI app on
the daemon's registry (:mod:`tickerd.metrics`); the page's HTML is package data
(``tickerd/static/status.html``, script and style inline), so it works offline and needs no
build step.

The port is bound by :func:`bind`, a plain function that ``tickerd run`` calls before the
daemon takes its lease or connects anywhere: a port in use is refused (``OSError``) before
anything else happens, and hypercorn then serves the sockets already bound.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from importlib import resources

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from hypercorn.utils import wrap_app
from loguru import logger
from prometheus_client import make_asgi_app

from tickerd.daemon import TickerDaemon
from tickerd.metrics import Metrics
from tickerd.page import StatusPage

#: Connections waiting to be accepted, per socket.
BACKLOG = 128
_TEXT = b"text/plain; charset=utf-8"


def bind(port: int, host: str = "") -> list[socket.socket]:
    """Listening sockets on ``port`` (0: any free port) of ``host``, every interface when empty
    (IPv4 and, where the machine has it, IPv6), as ``trio.open_tcp_listeners`` binds them.
    Raises ``OSError`` (the port is in use, say) with nothing left bound."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:  # IPv6 switched off, say: the other families serve
                if exc.errno == errno.EAFNOSUPPORT:
                    continue
                raise
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # the IPv4 socket serves IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Site:
    """The ASGI application of the HTTP port: routes ``/``, ``/events``, ``/metrics``, ``/healthz``."""

    def __init__(self, daemon: TickerDaemon, title: str = "tickerd") -> None:
        self.metrics = Metrics(daemon)
        self.page = StatusPage(daemon, title)
        self._prometheus = make_asgi_app(self.metrics.registry)
        self._html = resources.files("tickerd").joinpath("static", "status.html").read_bytes()

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: say so at once
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return  # no websockets here: hypercorn refuses the connection
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(send, 405, b"only GET\n", _TEXT)
        elif path == "/metrics":
            await self._prometheus(scope, receive, send)
        elif path == "/healthz":
            status, text = self.metrics.healthz()
            await _respond(send, status, text.encode(), _TEXT)
        elif path == "/":
            await _respond(send, 200, self._html, b"text/html; charset=utf-8")
        elif path == "/events":
            await self._events(scope, receive, send)
        else:
            await _respond(send, 404, b"try /, /metrics or /healthz\n", _TEXT)

    async def _events(self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """The page's server-sent events, until the browser goes away."""
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async with trio.open_nursery() as nursery:

            async def until_disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(until_disconnected)
            await self.page.stream(chunk)


async def _respond(send: ASGISendCallable, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _ToLoguru(logging.Handler):
    """hypercorn's warnings and errors (an exception in the application) in tickerd's log."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.opt(exception=record.exc_info).log(record.levelname, "http: {}", record.getMessage())


def _error_log() -> logging.Logger:
    log = logging.getLogger("tickerd.web")
    log.setLevel(logging.WARNING)  # not hypercorn's "Running on …": tickerd says where, once
    log.propagate = False
    if not log.handlers:
        log.addHandler(_ToLoguru())
    return log


async def serve(
    site: Site,
    port: int | list[socket.socket],
    host: str = "",
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``site`` on ``port`` (0: any free port; or the sockets :func:`bind` bound) until
    cancelled; ``started`` reports the port."""
    sockets = port if isinstance(port, list) else bind(port, host)
    config = Config()
    config.errorlog = _error_log()
    bound = sockets[0].getsockname()[1]
    where = f"http://{host or '*'}:{bound}"
    logger.info("status page at {where}/, metrics at {where}/metrics, health at /healthz", where=where)
    with contextlib.ExitStack() as stack:
        for sock in sockets:
            stack.enter_context(sock)
        task_status.started(bound)
        app = wrap_app(site, config.wsgi_max_body_size, "asgi")
        await worker_serve(app, config, sockets=Sockets([], sockets, []))
