"""``tickerd watch``: a live view of the latest tickers in Redis, for a plain terminal.

It reads what any running daemon writes: the ``tickers:{exchange}`` hashes once, then every
update from the ``ticker_updates:*`` pub/sub channels, and redraws on updates (at most a few
times a second) with each ticker's age marked fresh or stale.  Every 10 s the status line
is refreshed from the health records.  Only ANSI cursor movement is used, so it works over
SSH in any terminal; piped into a file it prints plain tables instead.  Ctrl+C exits.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import TextIO

import trio

from tickerd import embedded, topology
from tickerd.board import Board
from tickerd.broadcast import Broadcast
from tickerd.commands import EXIT_CONFIG, add_config_option, load_or_report, seconds
from tickerd.commands.status import read_report, read_summary, summary_line
from tickerd.layout import RedisLayout
from tickerd.redact import redact

#: Seconds between two status lines (health records are read from Redis).
STATUS_EVERY = 10.0
#: Shortest time between two redraws of a terminal (updates in between are shown together).
REDRAW_EVERY = 0.2
#: Time between two plain tables when the output is not a terminal.
PRINT_EVERY = 1.0

_ENTER, _LEAVE = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"  # alternate screen, cursor
_HOME, _EOL, _EOS = "\x1b[H", "\x1b[K", "\x1b[J"
_GREEN, _RED, _DIM, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[0m"


def _color(line: str) -> str:
    """Green ``fresh``, red ``STALE`` at the end of a table line."""
    for word, color in (("fresh", _GREEN), ("STALE", _RED)):
        if line.endswith(word):
            return f"{line[: -len(word)]}{color}{word}{_RESET}"
    return line


class View:
    """Draws a :class:`Board` to a terminal (in place) or to a pipe (plain tables)."""

    def __init__(self, board: Board, out: TextIO, title: str, interactive: bool) -> None:
        self.board = board
        self.out = out
        self.title = title
        self.interactive = interactive
        #: Something to show came in since the last draw (kept while a draw is paced, so a
        #: change then is drawn right after the pause, not a second later).
        self.pending = False
        self.changed: Broadcast[None] = Broadcast()

    def touch(self) -> None:
        self.pending = True
        self.changed.fire(None)

    def draw(self) -> None:
        now = time.time()
        clock = datetime.fromtimestamp(now).strftime("%H:%M:%S")
        header = f"{self.title}  {clock}  {len(self.board.tickers)} tickers"
        body = self.board.lines(now)
        if not self.interactive:
            self.out.write("\n".join([header, *body, self.board.status, ""]) + "\n")
            self.out.flush()
            return
        size = shutil.get_terminal_size()
        width = max(20, size.columns - 1)  # never the last column: some terminals wrap there
        status = textwrap.wrap(self.board.status, width) or [""]
        room = max(2, size.lines - 3 - len(status))
        if len(body) > room:
            body = [*body[: room - 1], f"… {len(body) - room + 1} more (make the terminal taller)"]
        lines = [_color(line[:width]) for line in [header + "   Ctrl+C exits", "", *body, ""]]
        lines += [f"{_DIM}{line}{_RESET}" for line in status]
        self.out.write(_HOME + "".join(line + _EOL + "\n" for line in lines).rstrip("\n") + _EOS)
        self.out.flush()

    async def run(self) -> None:
        """Redraw after changes (at most every REDRAW_EVERY s), and every second for ages."""
        pace = REDRAW_EVERY if self.interactive else PRINT_EVERY
        while True:
            if not self.pending:
                with trio.move_on_after(1.0):
                    await self.changed.wait()
            self.pending = False
            self.draw()
            await trio.sleep(pace)


async def watch(
    url: str,
    prefix: str,
    stale_after: float,
    *,
    out: TextIO,
    interactive: bool,
    exchanges: list[str] | None = None,
    title: str = "tickerd watch",
    derivatives: bool | None = None,
    summary: Callable[[topology.Client], str] | None = None,
) -> None:
    """Show the tickers in Redis at ``url`` until cancelled.  ``summary`` reads the status line
    (default: the daemon's on ``prefix``; ``tickerd watch`` passes the fleet's in fleet mode)."""
    layout = RedisLayout(prefix)
    board = Board(stale_after, exchanges, derivatives)
    view = View(board, out, title, interactive)
    client = topology.client(url, socket_connect_timeout=2.0, socket_timeout=5.0)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]

    async def listen() -> None:
        while True:
            try:
                message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.2)
            except topology.ERRORS as exc:  # pub/sub reconnects (and resubscribes) on the next call
                board.status = f"status: Redis connection lost ({exc}); reconnecting"
                view.touch()
                await trio.sleep(1)
                continue
            if message is not None and message["type"] == "pmessage":
                board.update(layout.decode_ticker(message["data"]))
                view.touch()

    def read_status(client: topology.Client) -> str:
        return summary(client) if summary else summary_line(read_report(client, url, prefix))

    async def statuses() -> None:
        while True:
            board.status = "status: " + await trio.to_thread.run_sync(read_status, client)
            view.touch()
            await trio.sleep(STATUS_EVERY)

    try:
        # Subscribe before reading the hashes, so no update falls between the two.
        await trio.to_thread.run_sync(pubsub.psubscribe, layout.updates_pattern())
        for record in await trio.to_thread.run_sync(layout.read_all_tickers, client):
            board.update(record)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            nursery.start_soon(statuses)
            nursery.start_soon(view.run)
    finally:
        pubsub.close()
        client.close()


async def until_interrupted(duration: float | None, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main()`` until Ctrl+C, SIGTERM or ``duration`` seconds, then return normally."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            with trio.move_on_after(duration if duration is not None else float("inf")):
                await main()
            nursery.cancel_scope.cancel()


@contextmanager
def screen(out: TextIO, interactive: bool) -> Iterator[None]:
    """The terminal's alternate screen while a live view runs, restored however it ends."""
    if interactive:
        out.write(_ENTER)
    try:
        yield
    finally:
        if interactive:
            out.write(_LEAVE)
            out.flush()


def run_watch(args: argparse.Namespace) -> int:
    config = load_or_report(args)
    if config is None:
        return EXIT_CONFIG
    url = embedded.locate(config.redis)
    try:
        answering = embedded.probe(url)
    except embedded.RedisRefusedError as exc:  # a wrong password, say: named, not "no answer"
        print(f"tickerd watch: {exc}", file=sys.stderr)
        return 2
    if not answering:
        print(f"tickerd watch: Redis at {redact(url)} does not answer", file=sys.stderr)
        return 2
    out = sys.stdout
    interactive = out.isatty()
    prefix = config.redis.prefix
    view = partial(
        watch,
        url,
        prefix,
        config.health.stale_after,
        out=out,
        interactive=interactive,
        exchanges=args.exchange,
        derivatives=args.derivatives,
        title=f"tickerd watch  {redact(url)}" + (f"  prefix {prefix!r}" if prefix else ""),
        summary=partial(read_summary, url=url, config=config),
    )
    with screen(out, interactive):
        trio.run(until_interrupted, args.duration, view)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "watch",
        help="live view of the latest tickers in Redis (Ctrl+C exits)",
        description="A live view of the latest tickers in Redis, updated on every change; "
        "ages are marked fresh or STALE (health.stale_after); a status line every 10 s.",
    )
    add_config_option(parser)
    parser.add_argument("--exchange", action="append", metavar="NAME", help="only this exchange (repeatable)")
    parser.add_argument("--duration", type=seconds, metavar="SECONDS", help="exit after this long")
    parser.add_argument(
        "--derivatives",
        action=argparse.BooleanOptionalAction,
        help="show (or hide) the mark price, index, funding, next funding and open interest columns "
        "(default: shown once a ticker has them)",
    )
    parser.set_defaults(func=run_watch)
