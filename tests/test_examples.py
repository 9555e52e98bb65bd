"""The examples run as written (as scripts), against fake exchanges and the real Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import cli_config, read_until, start_fake
from tickerd.testing import FakeExchange, FakeKraken

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env(prefix: str) -> dict[str, str]:
    # Unbuffered, so a pipe sees each line as a terminal would.
    return {**os.environ, "REDIS_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}


async def keep_moving(fake: FakeExchange, symbol: str) -> None:
    """A lively market: a new price every 50 ms."""
    while True:
        fake.wiggle(symbol)
        await fake.push(symbol)
        await trio.sleep(0.05)


@pytest.mark.parametrize("layout", ["extended", "fullon"])  # fullon: records without received_ts
async def test_single_ticker_loop_collects_ten_new_tickers_and_exits(
    nursery: trio.Nursery, prefix: str, layout: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    nursery.start_soon(keep_moving, kraken, "ETH/USD")
    script = str(EXAMPLES / "single_ticker_loop_example.py")
    args = [sys.executable, script, "kraken", "--symbol", "ETH/USD", "--url", kraken.url]
    result = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            args, capture_output=True, text=True, timeout=60, env={**_env(prefix), "REDIS_LAYOUT": layout}
        )
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [f"{n}/10" for n in range(1, 11)]
    assert all(" kraken ETH/USD: last " in line for line in lines)
    assert len(set(lines)) == 10  # ten different tickers, never the same one twice


async def test_pipeline_example_shows_tickers_and_status_and_stops_on_ctrl_c(
    nursery: trio.Nursery, tmp_path: Path, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    nursery.start_soon(keep_moving, kraken, "BTC/USD")
    config = cli_config(tmp_path, kraken.url, prefix)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLES / "run_example_pipeline.py"), "--config", str(config)],
        stdout=subprocess.PIPE,
        env=_env(prefix),
    )
    assert process.stdout is not None
    seen = bytearray()
    try:
        with trio.fail_after(20):
            await read_until(process.stdout, b"status: Redis up", seen)
            await read_until(process.stdout, b"BTC/USD", seen)
            await read_until(process.stdout, "● fresh".encode(), seen)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
            await read_until(process.stdout, b"\nstopped\n", seen)
    finally:
        process.kill()
    assert "kraken     connected    1 connection(s), 1 symbols" in seen.decode()
