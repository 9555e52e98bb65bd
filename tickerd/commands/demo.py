"""``tickerd demo``: the whole product on a machine without internet, in one command.

It starts the fake exchange servers of :mod:`tickerd.testing` on 127.0.0.1 with lively
synthetic prices (:mod:`tickerd.testing.market`), prints their URLs, and runs the daemon pointed
at them, the ``watch`` view and the live status page (:mod:`tickerd.web`, on 127.0.0.1; its URL
is printed, and opened in the browser on a desktop).  The Redis is the usual one (``REDIS_URL``, else
127.0.0.1:6379, else a private redis-server), always under the ``tickerd-demo:`` prefix
whatever ``REDIS_PREFIX`` says, so real data is never touched; the demo's tickers (keys under
that prefix only) are removed when it ends.  A second demo on the same Redis finds the prefix
leased and exits 2.  ``tickerd status`` with ``REDIS_PREFIX=tickerd-demo:`` reports on it.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import webbrowser
from functools import partial
from typing import Any, TextIO

import trio

from tickerd import embedded, exchanges, logs, topology, web
from tickerd.commands import (
    EXIT_CONFIG,
    add_config_option,
    first_leaf,
    load_or_report,
    port,
    seconds,
    watch,
)
from tickerd.config import Config, structure
from tickerd.daemon import serve
from tickerd.layout import RedisLayout
from tickerd.lease import LeaseError
from tickerd.testing import FakeExchange, fake_for
from tickerd.testing.market import lively, sample_symbols

#: Where the demo serves its HTTP port (the status page): this machine only.
HOST = "127.0.0.1"
#: The demo's own prefix, whatever ``REDIS_PREFIX`` or the config say: the demo never touches
#: real data, and removes only keys under it.
PREFIX = "tickerd-demo:"
TITLE = "tickerd demo"


def demo_config(endpoints: dict[str, dict[str, str]], redis_url: str | None, prefix: str) -> Config:
    """The demo's config: each exchange at its fake's ``endpoints`` (:meth:`FakeExchange.endpoints`)."""
    return structure(
        {
            "redis": {"prefix": prefix} | ({"url": redis_url} if redis_url else {}),
            "exchanges": {name: at | {"symbols": sample_symbols(name)} for name, at in endpoints.items()},
        }
    )


async def run_demo(
    config: Config,
    fakes: dict[str, FakeExchange],
    *,
    out: TextIO,
    interactive: bool,
    page: list[socket.socket] | None = None,
) -> None:
    """The fakes' markets, the daemon, the view and, on the ``page`` sockets (:func:`web.bind`),
    the status page, until cancelled."""
    rng = random.Random()
    async with trio.open_nursery() as nursery:
        for name, fake in fakes.items():
            nursery.start_soon(lively, fake, sample_symbols(name), rng)
        daemon = await nursery.start(serve, config)
        if page is not None:
            await nursery.start(web.serve, web.Site(daemon, TITLE), page)
        with trio.move_on_after(5):  # so that the first status line shows them connected, fresh
            while any(h.state != "connected" or h.waiting for h in daemon.health().exchanges.values()):
                await daemon.health_changed()
            await _records_caught_up(config)
        await watch.watch(
            config.redis.address,
            config.redis.prefix,
            config.health.stale_after,
            out=out,
            interactive=interactive,
            title=f"{TITLE} (fake exchanges on 127.0.0.1)",
        )


async def _records_caught_up(config: Config) -> None:
    """Return once the health records in Redis show every exchange connected with nothing
    waiting, as the daemon already does: the monitor writes the last changes of a burst up to a
    second after them (:data:`tickerd.monitor.COALESCE`), and the view reads the records."""
    client = topology.client(config.redis.address, socket_connect_timeout=2.0, socket_timeout=5.0)
    layout = RedisLayout(config.redis.prefix)
    try:
        while True:
            _, records = await trio.to_thread.run_sync(layout.read_health, client)
            if records and all(r.state == "connected" and not r.waiting for r in records.values()):
                return
            await trio.sleep(0.05)
    except topology.ERRORS:
        return  # the view says what is wrong with Redis
    finally:
        client.close()


async def _with_fakes(names: list[str], redis_url: str | None, prefix: str, body: Any) -> None:
    """Start the fakes (their ports are known only once they listen), then ``body(config, fakes)``."""
    async with trio.open_nursery() as nursery:
        fakes: dict[str, FakeExchange] = {}
        for name in names:
            fakes[name] = await nursery.start(fake_for(name)().serve)
        await body(demo_config({n: f.endpoints() for n, f in fakes.items()}, redis_url, prefix), fakes)
        nursery.cancel_scope.cancel()


def _clean(url: str, prefix: str) -> None:
    """Remove the demo's tickers (its health records expire by themselves)."""
    client = topology.client(url, socket_connect_timeout=2.0)
    try:
        RedisLayout(prefix).delete_tickers(client, exchanges.names())
    except topology.ERRORS:
        pass
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    config = load_or_report(args)  # for its Redis and log settings; never its prefix
    if config is None:
        return EXIT_CONFIG
    names = args.exchange or exchanges.names()
    unknown = sorted(set(names) - set(exchanges.names()))
    if unknown:
        print(
            f"tickerd demo: unknown exchange(s) {', '.join(unknown)} (have {', '.join(exchanges.names())})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        sockets = web.bind(args.http_port, HOST)
    except OSError as exc:
        print(f"tickerd demo: --http-port {args.http_port}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    url = f"http://{HOST}:{sockets[0].getsockname()[1]}/"
    out = sys.stdout
    interactive = out.isatty()
    log_file = embedded.state_dir() / "demo.log"
    if interactive:  # log lines would tear the live view: they go to a file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        print(f"tickerd demo: logs go to {log_file}", file=sys.stderr)
    logs.configure(config.log, log_file if interactive else None)
    try:
        with embedded.resolved(config) as resolved:
            redis_url = resolved.redis.url

            async def body(demo: Config, fakes: dict[str, FakeExchange]) -> None:
                for name, fake in fakes.items():  # before the view, so they stay on the terminal
                    print(f"tickerd demo: fake {name} at {fake.url}", file=sys.stderr)
                print(f"tickerd demo: status page at {url}", file=sys.stderr)
                if args.open if args.open is not None else interactive and _desktop():
                    webbrowser.open(url)
                main = partial(run_demo, demo, fakes, out=out, interactive=interactive, page=sockets)
                with watch.screen(out, interactive):
                    await watch.until_interrupted(args.duration, main)

            refused: BaseException | None = None
            try:
                trio.run(_with_fakes, names, redis_url, PREFIX, body)
            except* LeaseError as group:
                refused = first_leaf(group)
            finally:
                if refused is None:  # another demo's keys (it holds the prefix) are left alone
                    _clean(resolved.redis.address, PREFIX)
    except embedded.EmbeddedRedisError as exc:
        print(f"tickerd demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if refused is not None:
        print(f"tickerd demo: {refused}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _desktop() -> bool:
    """Whether a browser can open a window here: not on a server or over SSH, where Python's
    ``webbrowser`` would run a text-mode browser on the terminal the live view draws on."""
    graphical = "DISPLAY" in os.environ or "WAYLAND_DISPLAY" in os.environ
    return sys.platform in ("darwin", "win32") or graphical


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="fake exchanges with lively prices, the daemon and the live view, offline (Ctrl+C exits)",
        description="Run fake exchange servers on 127.0.0.1 with synthetic prices, the daemon pointed "
        f"at them (keys under {PREFIX!r}) and the live view: tickerd working without internet.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--exchange",
        action="append",
        metavar="NAME",
        help="only this exchange (repeatable; default every exchange)",
    )
    parser.add_argument("--duration", type=seconds, metavar="SECONDS", help="exit after this long")
    parser.add_argument(
        "--http-port",
        type=port,
        default=0,
        metavar="PORT",
        help=f"serve the live status page (and /metrics, /healthz) on {HOST}:PORT (default: a free port)",
    )
    parser.add_argument(
        "--open",
        action=argparse.BooleanOptionalAction,
        help="open the status page in the browser (default: on a desktop, when run on a terminal)",
    )
    parser.set_defaults(func=run)
