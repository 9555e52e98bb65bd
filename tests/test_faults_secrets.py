"""Secrets are never printed: a Redis password and a token in an exchange ``url`` override stay
out of the daemon's log, ``status`` (table, ``--json``, its error lines), ``watch`` and the
records in Redis, while the places that show those URLs still show them, redacted."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import redis
import trio

from tests.conftest import run_cli, start_fake
from tests.processes import RedisServer, daemon_process, until_redis
from tickerd.layout import RedisLayout
from tickerd.redact import redact
from tickerd.testing import FakeKraken

PASSWORD = "pw-c0rrect-h0rse"
TOKEN = "tk-b4ttery-st4ple"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:p@ss:w@host:6380/1", "rediss://user:***@host:6380/1"),
        ("Redis at redis://:s@h:1/0 is down", "Redis at redis://:***@h:1/0 is down"),
        (
            "wss://relay/ws?stream=a&api_key=K&X-Signature=S#f",
            "wss://relay/ws?stream=a&api_key=***&X-Signature=***#f",
        ),
        ("host=db password='a b' dbname=x", "host=db password=*** dbname=x"),
        ("unix:///run/redis.sock?db=0&password=p", "unix:///run/redis.sock?db=0&password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host/0?token=", "redis://user@host/0?token="),
    ],
)
def test_redact_masks_passwords_and_credential_parameters(text: str, shown: str) -> None:
    assert redact(text) == shown


async def _refuse_handshakes(stream: trio.SocketStream) -> None:
    """An HTTP server where a websocket is expected: every handshake fails, naming the URL."""
    await stream.receive_some()
    await stream.send_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await stream.aclose()


async def _wait_for_value(client: redis.Redis, key: str, part: bytes) -> None:
    """Return once ``key`` (a string or a hash) holds ``part`` (another process writes it)."""
    await until_redis(client, lambda: part in _values(client, key), within=20)


def _values(client: redis.Redis, key: str) -> bytes:
    """What ``key`` holds (a string, or a hash's values), as one text to search."""
    values = client.hvals(key) if client.type(key) == b"hash" else [client.get(key)]
    return b" ".join(value for value in values if isinstance(value, bytes))


@pytest.mark.timeout(90)
async def test_no_password_or_token_in_log_status_watch_or_records(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RedisServer(password=PASSWORD)
    kraken = await start_fake(nursery, FakeKraken())
    listeners = await nursery.start(partial(trio.serve_tcp, _refuse_handshakes, 0, host="127.0.0.1"))
    refusing = listeners[0]
    refused_url = f"ws://127.0.0.1:{refusing.socket.getsockname()[1]}/ws?token={TOKEN}"
    config = tmp_path / "tickerd.toml"
    config.write_text(
        "[health]\ninterval = 1\n"
        f'[exchanges.kraken]\nurl = "{kraken.url}?token={TOKEN}"\nsymbols = ["BTC/USD"]\n'
        f'[exchanges.binance]\nurl = "{refused_url}"\nsymbols = ["BTC/USDT"]\n'
    )
    env = {"REDIS_URL": server.url}

    def cli(*args: str) -> str:
        result = run_cli("--config", str(config), *args, env=env)
        return result.stdout + result.stderr

    try:
        async with daemon_process(["--config", str(config)], env=env) as daemon:
            await daemon.wait_log("does not answer yet")  # the server is not started yet
            server.start()
            with trio.fail_after(30):
                await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
                await kraken.push("BTC/USD", last=101.0)
            client = redis.Redis.from_url(server.url)
            await _wait_for_value(client, RedisLayout("").health("binance"), b"token=")
            await _wait_for_value(client, RedisLayout("").heartbeat(), b"running")
            await _wait_for_value(client, RedisLayout("").tickers("kraken"), b"101.0")
            records = b" ".join(_values(client, key) for key in client.scan_iter()).decode()
            client.close()
            table, as_json = (
                await trio.to_thread.run_sync(cli, "status"),
                await trio.to_thread.run_sync(cli, "status", "--json"),
            )
            watched = await trio.to_thread.run_sync(cli, "watch", "--duration", "1")
            server.kill()
            unreachable = await trio.to_thread.run_sync(cli, "status")
    finally:
        server.kill()
    shown = {
        "log": daemon.output,
        "status": table,
        "status --json": as_json,
        "watch": watched,
        "status, Redis down": unreachable,
        "records": records,
    }
    for where, text in shown.items():
        assert PASSWORD not in text and TOKEN not in text, f"a secret in {where}:\n{text}"
    # The URLs are still shown, masked: the assertions above are not vacuous.
    masked = f"redis://:***@127.0.0.1:{server.port}/0"
    assert masked in daemon.output and masked in table and masked in as_json and masked in watched
    assert f"Redis at {masked} is not reachable" in unreachable
    assert "token=***" in daemon.output and "token=***" in records
