"""Prometheus metrics and /healthz, scraped over real HTTP from a daemon fed by a fake."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

import tickerd
from tests.conftest import (
    Updates,
    cli_config,
    make_config,
    read_until,
    run_cli,
    start_daemon,
    start_fake,
    wait_health,
)
from tests.processes import free_port
from tickerd import web
from tickerd.testing import FakeKraken


async def get(port: int, path: str) -> tuple[int, str]:
    """One HTTP GET; (status, body).  HTTP/1.0, so the body ends with the connection and is not
    chunked."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        response = bytearray()
        while chunk := await stream.receive_some():
            response += chunk
    head, _, body = bytes(response).partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def start_metrics(nursery: trio.Nursery, daemon: tickerd.TickerDaemon) -> int:
    port: int = await nursery.start(web.serve, web.Site(daemon), 0, "127.0.0.1")
    return port


async def test_metrics_count_frames_tickers_batches_and_latency(
    nursery: trio.Nursery, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
    port = await start_metrics(nursery, daemon)
    await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
    await kraken.send_raw("garbage")
    await kraken.push("BTC/USD", last=1.0)
    await kraken.push("BTC/USD", last=2.0)
    await kraken.push("BTC/USD", last=3.0, bid=5.0, ask=4.0)  # a crossed book: written, counted
    await updates.wait_for(lambda r: r["last"] == 3.0)
    writer = daemon.writer
    with trio.fail_after(10):  # published before the writer's own counters move on: wait for them
        while writer.written + writer.coalesced < 4:  # the snapshot and three pushes
            await writer.flushed()

    status, text = await get(port, "/metrics")
    assert status == 200
    found = samples(text)
    kraken_label = (("exchange", "kraken"),)
    health = daemon.health().exchanges["kraken"]
    assert found["tickerd_frames_received_total", kraken_label] == health.frames >= 5
    assert found["tickerd_frames_junk_total", kraken_label] == 1
    assert found["tickerd_frames_decoded_total", kraken_label] == health.frames - 1
    assert found["tickerd_reconnects_total", kraken_label] == 0
    assert found["tickerd_crossed_books_total", kraken_label] == health.crossed == 1
    assert found["tickerd_symbols", kraken_label] == 1
    assert found["tickerd_stale_symbols", kraken_label] == 0
    assert found["tickerd_waiting_symbols", kraken_label] == 0  # BTC/USD had its first ticker
    assert found["tickerd_connections", kraken_label] == 1
    assert found["tickerd_tickers_written_total", ()] == writer.written >= 1
    assert found["tickerd_coalesced_updates_total", ()] == writer.coalesced
    assert found["tickerd_writes_rejected_total", ()] == writer.rejected == 0  # one writer: none
    assert found["tickerd_batches_total", ()] == writer.batches
    assert found["tickerd_redis_up", ()] == 1
    assert found["tickerd_redis_write_seconds_count", ()] == writer.batches
    assert found["tickerd_frame_to_redis_seconds_count", ()] == writer.batches
    assert 0 < found["tickerd_frame_to_redis_seconds_sum", ()] < 10 * writer.batches


async def test_healthz_is_200_when_healthy_and_503_with_the_reason_otherwise(
    nursery: trio.Nursery, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}, feed={"reconnect_delay": 30})
    daemon = await start_daemon(nursery, config)
    port = await start_metrics(nursery, daemon)
    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "connected")
    assert await get(port, "/healthz") == (200, "ok\n")

    kraken.refuse = True
    await kraken.drop()
    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "reconnecting")
    assert await get(port, "/healthz") == (503, "degraded: kraken: reconnecting\n")
    assert (await get(port, "/nope"))[0] == 404


async def test_run_serves_metrics_on_the_given_port(
    nursery: trio.Nursery, tmp_path: Path, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    port = free_port()
    config = str(cli_config(tmp_path, kraken.url, prefix))
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tickerd", "run", "--config", config, "--metrics-port", str(port)],
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        with trio.fail_after(20):
            await read_until(process.stderr, f":{port}/metrics".encode(), bytearray())
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
            await kraken.push("BTC/USD", last=8.0)
            await updates.wait_for(lambda r: r["last"] == 8.0)
            # The counter moves after the publish returns; once a later batch is published,
            # the first one has certainly been counted.
            await kraken.push("BTC/USD", last=9.0)
            await updates.wait_for(lambda r: r["last"] == 9.0)
            status, text = await get(port, "/metrics")
            assert status == 200 and samples(text)["tickerd_tickers_written_total", ()] >= 1
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        process.kill()


def test_a_metrics_port_in_use_is_a_clear_error_with_exit_2(tmp_path: Path, prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = cli_config(tmp_path, "ws://127.0.0.1:1/v2", prefix)
        result = run_cli("run", "--config", str(config), "--metrics-port", str(port))
    assert result.returncode == 2
    assert f"--metrics-port {port}: " in result.stderr and "address already in use" in result.stderr.lower()
