"""``tickerd watch`` and ``tickerd demo`` as a person runs them: piped, and on a terminal (pty)."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import trio

from tests.conftest import Updates, make_config, read_until, start_daemon, start_fake
from tests.processes import RedisServer
from tests.test_status import status_config
from tickerd import exchanges
from tickerd.board import Board, price
from tickerd.commands import demo
from tickerd.layout import RedisLayout
from tickerd.testing import FakeKraken


def test_board_marks_stale_tickers_and_formats_prices() -> None:
    board = Board(stale_after=60.0)
    now = time.time()
    board.update({"exchange": "kraken", "symbol": "BTC/USD", "bid": 64000.5, "ask": 64001.25, "last": 64001.0,
                  "time": now - 1, "received_ts": now - 1})  # fmt: skip
    board.update({"exchange": "okx", "symbol": "PEPE/USDT", "bid": 0.00001234, "ask": None, "last": 0.5,
                  "time": now - 300, "received_ts": now - 300})  # fmt: skip
    header, fresh, stale = board.lines(now)
    assert header.split() == ["EXCHANGE", "SYMBOL", "BID", "ASK", "LAST", "AGE"]
    assert fresh.split() == ["kraken", "BTC/USD", "64,000.50", "64,001.25", "64,001.00", "1.0", "s", "fresh"]
    assert stale.split() == ["okx", "PEPE/USDT", "1.234e-05", "-", "0.5", "5", "min", "STALE"]
    assert price(0.0) == "0" and price(150.123456) == "150.123"


def test_board_shows_the_derivative_columns_once_a_ticker_has_them() -> None:
    board = Board(stale_after=60.0)
    now = time.time()
    spot = {"exchange": "kraken", "symbol": "BTC/USD", "bid": 64000.5, "ask": 64001.25, "last": 64001.0,
            "time": now - 1, "received_ts": now - 1}  # fmt: skip
    board.update(spot)
    assert board.lines(now)[0].split() == ["EXCHANGE", "SYMBOL", "BID", "ASK", "LAST", "AGE"]
    board.update({"exchange": "deribit", "symbol": "BTC/USD:BTC", "bid": 64010.0, "ask": 64010.5,
                  "last": 64010.0, "mark_price": 64011.25, "index_price": 64005.0, "funding_rate": -0.000125,
                  "next_funding_ts": now + 2 * 3600, "open_interest": 1234567.0,
                  "time": now - 2, "received_ts": now - 2})  # fmt: skip
    header, perpetual, kraken = board.lines(now)
    assert header.split() == ["EXCHANGE", "SYMBOL", "BID", "ASK", "LAST", "MARK", "INDEX", "FUNDING", "NEXT",
                              "FUNDING", "OPEN", "INT", "AGE"]  # fmt: skip
    assert perpetual.split() == ["deribit", "BTC/USD:BTC", "64,010.00", "64,010.50", "64,010.00",
                                 "64,011.25", "64,005.00", "-0.0125%", "in", "2", "h", "1,234,567",
                                 "2.0", "s", "fresh"]  # fmt: skip
    assert kraken.split()[5:] == ["-", "-", "-", "-", "-", "1.0", "s", "fresh"]  # spot has none
    board.derivatives = False  # --no-derivatives
    assert "MARK" not in board.lines(now)[0]
    only_spot = Board(stale_after=60.0, derivatives=True)  # --derivatives
    only_spot.update(spot)
    assert "OPEN INT" in only_spot.lines(now)[0]


def _env(prefix: str) -> dict[str, str]:
    return {**os.environ, "REDIS_PREFIX": prefix}


async def test_watch_shows_updates_as_they_come_and_exits_on_ctrl_c(
    nursery: trio.Nursery, tmp_path: Path, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.push("BTC/USD", last=50000.0)
    await updates.wait_for(lambda r: r["last"] == 50000.0)

    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tickerd", "watch", "--config", status_config(tmp_path, prefix)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = bytearray()
    try:
        with trio.fail_after(20):
            await read_until(process.stdout, b"50,000.00", seen)  # from the stored hash
            await read_until(process.stdout, b"status: HEALTHY \xc2\xb7 kraken connected 1/1 fresh", seen)
            await kraken.push("BTC/USD", last=51234.5)  # arrives over pub/sub
            await read_until(process.stdout, b"51,234.50", seen)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        process.kill()
    table = seen.decode().split("\n\n")[0].splitlines()
    assert table[0].startswith("tickerd watch  redis://127.0.0.1:6379/0  prefix ")
    assert table[2].split()[:2] == ["kraken", "BTC/USD"] and table[2].endswith("fresh")


async def run_on_terminal(args: list[str], env: dict[str, str], marker: bytes) -> tuple[int, bytes]:
    """Run a command on a pseudo-terminal, Ctrl+C it once ``marker`` was drawn; (status, screen)."""
    controller, terminal = pty.openpty()
    process = await trio.lowlevel.open_process(
        args, stdin=terminal, stdout=terminal, stderr=subprocess.DEVNULL, env=env
    )
    os.close(terminal)
    screen = bytearray()
    try:
        with trio.fail_after(20):
            while marker not in screen:
                await trio.lowlevel.wait_readable(controller)
                screen += os.read(controller, 65536)
            process.send_signal(signal.SIGINT)
            status = await process.wait()
            while True:  # what it drew while leaving
                try:
                    chunk = os.read(controller, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                screen += chunk
    finally:
        process.kill()
        os.close(controller)
    return status, bytes(screen)


async def test_watch_on_a_terminal_draws_in_place_and_restores_it(tmp_path: Path, prefix: str) -> None:
    config = status_config(tmp_path, prefix)
    status, screen = await run_on_terminal(
        [sys.executable, "-m", "tickerd", "watch", "--config", config],
        _env(prefix),
        b"status: DOWN",  # no daemon under this prefix
    )
    assert status == 0
    assert screen.startswith(b"\x1b[?1049h\x1b[?25l")  # alternate screen, cursor hidden
    assert b"(no tickers in Redis yet)" in screen
    assert screen.endswith(b"\x1b[?25h\x1b[?1049l")  # the terminal is given back as it was


def _demo_env(server: RedisServer) -> dict[str, str]:
    """The demo's prefix is fixed: on a Redis of the test's own, so runs never meet."""
    return {**os.environ, "REDIS_URL": server.url}


async def test_demo_runs_offline_in_one_command(redis_server: RedisServer) -> None:
    args = [sys.executable, "-m", "tickerd", "demo", "--duration", "4", "--exchange", "kraken"]
    env = _demo_env(redis_server)
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [*args, "--exchange", "binance"], capture_output=True, text=True, timeout=60, env=env
        )
    )
    assert result.returncode == 0, result.stderr
    last_table = result.stdout.strip().split("\n\n")[-1].splitlines()
    assert last_table[0].startswith("tickerd demo (fake exchanges on 127.0.0.1)")
    rows = [line.split() for line in last_table[2:-1]]
    assert [row[:2] for row in rows] == [
        *(["binance", s] for s in ("BTC/USDT", "ETH/USDT")),
        *(["kraken", s] for s in ("BTC/USD", "ETH/USD", "SOL/USD")),
    ]
    assert all(row[-1] == "fresh" for row in rows)
    assert last_table[-1].startswith(
        "status: HEALTHY · binance connected 2/2 fresh · kraken connected 3/3 fresh"
    )
    client = redis.Redis.from_url(redis_server.url)
    assert not client.exists(RedisLayout(demo.PREFIX).tickers("kraken"))  # the demo cleans up its tickers
    client.close()


async def test_demo_shows_derivatives_with_mark_price_and_funding(redis_server: RedisServer) -> None:
    """Perpetuals and futures come with their mark, index, funding and open interest columns;
    a dated future has no funding, and Binance futures have no open interest on the websocket."""
    args = ["demo", "--duration", "4", "--exchange", "binance_usdm", "--exchange", "deribit"]
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "tickerd", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=_demo_env(redis_server),
        )
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout.strip().split("\n\n")[-1].splitlines()
    header = table[1].split()
    assert header[:9] == ["EXCHANGE", "SYMBOL", "BID", "ASK", "LAST", "MARK", "INDEX", "FUNDING", "NEXT"]
    rows = {(row[0], row[1]): row for row in (line.split() for line in table[2:-1])}
    assert set(rows) == {
        *(("binance_usdm", s) for s in exchanges.get("binance_usdm").sample_symbols),
        *(("deribit", s) for s in exchanges.get("deribit").sample_symbols),
    }
    for (_, symbol), row in rows.items():
        mark, index, rate = row[5:8]
        assert float(mark.replace(",", "")) > 0 and float(index.replace(",", "")) > 0, row
        if "-" in symbol.partition(":")[2]:  # a dated future pays no funding
            assert rate == "-", row
        else:
            assert rate.endswith("%") and float(rate[:-1]) != 0, row
        assert row[-1] == "fresh", row


async def test_demo_on_a_terminal_exits_cleanly_on_ctrl_c(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {**_demo_env(redis_server), "TICKERD_STATE_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "tickerd", "demo", "--exchange", "okx"]
    served = len(exchanges.get("okx").sample_symbols)
    status, screen = await run_on_terminal(args, env, f"okx connected {served}/{served} fresh".encode())
    assert status == 0
    assert b"ETH/USDT:USDT" in screen and screen.endswith(b"\x1b[?25h\x1b[?1049l")
    assert "okx" in (tmp_path / "demo.log").read_text()  # the logs stayed off the screen
