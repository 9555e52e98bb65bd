"""``tickerd [run] [--config FILE] [--metrics-port PORT]``: the daemon in the foreground.

Exit status: 0 after a clean shutdown (SIGINT/SIGTERM) with every latest value written, 2 for
an invalid configuration, a metrics port in use or a prefix another daemon owns (all found before
any connection is opened or anything written), 1 when latest values were left unwritten (Redis
did not take them within ``shutdown_grace``; the log says how many) or a second signal cut the
shutdown short.

It imports the daemon at the top, as the commands that need it do: :mod:`tickerd.commands.main`
imports a command's module only to run it (or to show every command's help), so ``status`` and
``watch`` start without it.  The HTTP port (:mod:`tickerd.web`: hypercorn, its HTTP/2 and
websocket stacks, the status page) is imported only when ``--metrics-port`` asks for it: a
daemon without a port does not carry it (about 130 modules and 6 MiB of memory).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

import trio
from loguru import logger

from tickerd import embedded, logs
from tickerd.commands import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNWRITTEN,
    METRICS_HELP,
    add_config_option,
    first_leaf,
    load_or_report,
    port,
)
from tickerd.config import Config, ConfigError
from tickerd.daemon import TickerDaemon, serve
from tickerd.lease import LeaseError
from tickerd.systemd import Notifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the daemon (the default)")
    add_config_option(run)
    run.add_argument(
        "--metrics-port", type=port, metavar="PORT", default=argparse.SUPPRESS, help=METRICS_HELP
    )
    run.set_defaults(func=run_daemon)


async def run_until_signalled(config: Config, metrics_port: int | None = None) -> int:
    """Serve until SIGINT/SIGTERM; the first cancels and flushes (a fleet member departs
    first: :meth:`TickerDaemon.depart`), a second exits at once.

    Returns the exit status: 0, :data:`EXIT_UNWRITTEN` when the writer stopped with latest values
    it could not write, or :data:`EXIT_CONFIG` when the metrics port cannot be bound.
    The port is bound first, before the daemon takes its lease, connects or writes anything:
    a start that fails leaves Redis (and a daemon already running there) untouched.
    Under systemd it notifies readiness, status, stopping and watchdog pings
    (:mod:`tickerd.systemd`).
    """
    listeners: list[socket.socket] = []
    if metrics_port is not None:
        from tickerd import web  # the HTTP port's stack, only for a port to serve

        try:
            listeners = web.bind(metrics_port)
        except OSError as exc:
            logger.error("--metrics-port {port}: {error}", port=metrics_port, error=exc)
            return EXIT_CONFIG
    status = EXIT_OK
    daemon: TickerDaemon | None = None
    with (
        Notifier.from_environment() as notifier,
        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
    ):
        async with trio.open_nursery() as outer:
            outer.start_soon(notifier.keep_alive)
            serve_scope = trio.CancelScope()

            async def _serve() -> None:
                nonlocal status, daemon
                with serve_scope:
                    async with trio.open_nursery() as nursery:
                        daemon = await nursery.start(serve, config)
                        if listeners:
                            await nursery.start(web.serve, web.Site(daemon), listeners)
                        nursery.start_soon(notifier.follow, daemon)
                if daemon is not None and daemon.writer.unwritten:
                    status = EXIT_UNWRITTEN  # the writer logged how many
                outer.cancel_scope.cancel()

            async def _stop() -> None:
                # A fleet member first hands its symbols over, within the shutdown grace.
                if daemon is not None:
                    await daemon.depart(trio.current_time() + config.shutdown_grace)
                serve_scope.cancel()

            outer.start_soon(_serve)
            stopping = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if stopping:
                    logger.warning("{signal} again: exiting now", signal=name)
                    os._exit(EXIT_INTERRUPTED)
                stopping = True
                logger.info("{signal}: shutting down (flushing Redis writes)", signal=name)
                outer.start_soon(_stop)
                await notifier.stopping()
    return status


def _run(config: Config, metrics_port: int | None) -> int:
    """:func:`run_until_signalled` in trio; a configuration error found once running (the
    database source's missing schema) is reported like any other, with exit status 2."""
    failure: BaseException | None = None
    what = "configuration error: "
    try:
        return trio.run(run_until_signalled, config, metrics_port)
    except* ConfigError as group:
        failure = group
    except* LeaseError as group:  # the prefix is another daemon's
        failure, what = group, ""
    assert failure is not None
    print(f"tickerd: {what}{first_leaf(failure)}", file=sys.stderr)
    return EXIT_CONFIG


def run_daemon(args: argparse.Namespace) -> int:
    """``tickerd run``: the daemon in the foreground until a signal."""
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    logs.configure(config.log)
    try:
        with embedded.resolved(config) as config:
            status = _run(config, args.metrics_port)
    except embedded.EmbeddedRedisError as exc:
        logger.error("{error}", error=str(exc))
        return EXIT_CONFIG
    logger.info("tickerd stopped")
    return status
