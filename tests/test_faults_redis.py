"""Redis faults: a server that refuses tickerd (at start-up: exit 2 with the reason; while
running: an ERROR, the reason in health and ``status``, retried until put right), a server
restarted empty (health records back at once, not one interval later) and a hung server
(the latest values held and written after).  Real redis-servers of the tests' own, the daemon
as a subprocess where its log, exit status or ``status`` is what is judged."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import redis
import trio
from loguru import logger

from tests.conftest import make_config, run_cli, start_daemon, start_fake
from tests.processes import RedisServer, daemon_process, until_redis
from tickerd.layout import RedisLayout
from tickerd.metrics import Metrics
from tickerd.testing import FakeKraken

PASSWORD = "pw-0ld-c0rrect"
WRONG = "pw-wr0ng-gu3ss"
ROTATED = "pw-n3w-r0tated"
LAYOUT = RedisLayout("")


def config_file(tmp_path: Path, redis_url: str, kraken_url: str, *, interval: float = 1.0) -> Path:
    """One Kraken symbol, the given Redis, short health interval and grace."""
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = 1.0\n[health]\ninterval = {interval}\n[redis]\nurl = "{redis_url}"\n'
        f'[exchanges.kraken]\nurl = "{kraken_url}"\nsymbols = ["BTC/USD"]\n'
    )
    return path


def last_price(client: redis.Redis) -> float | None:
    record = LAYOUT.read_ticker(client, "kraken", "BTC/USD")
    return None if record is None else record["last"]


async def status(path: Path) -> tuple[int, str]:
    """``tickerd status`` (table, then ``--json``): the exit status of the table and all output."""
    table = await trio.to_thread.run_sync(partial(run_cli, "status", "--config", str(path)))
    json = await trio.to_thread.run_sync(partial(run_cli, "status", "--json", "--config", str(path)))
    assert json.returncode == table.returncode
    return table.returncode, table.stdout + table.stderr + json.stdout + json.stderr


def rotate(admin: redis.Redis, password: str) -> None:
    """Change the server's password and drop every other client, as a rotation with a restart
    of the clients' connections does (an authenticated connection keeps working otherwise)."""
    admin.config_set("requirepass", password)
    admin.client_kill_filter(_type="normal", skipme=True)


async def _answer_junk(stream: trio.SocketStream) -> None:
    """Not Redis: an HTTP server on the port."""
    await stream.receive_some()
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await stream.aclose()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong password", "refuses tickerd: authentication failed (invalid username-password pair"),
        (
            "no password",
            "refuses tickerd: authentication failed (the server requires a password and the URL has none",
        ),
        ("no such database", "refuses tickerd: DB index is out of range"),
        ("not redis", "refuses tickerd: not a Redis server"),
    ],
)
async def test_a_redis_that_refuses_tickerd_ends_the_start_with_exit_2(
    case: str, reason: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RedisServer(password=PASSWORD)
    server.start()
    try:
        port = server.port
        if case == "not redis":
            listeners = await nursery.start(partial(trio.serve_tcp, _answer_junk, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
        url = {
            "wrong password": f"redis://:{WRONG}@127.0.0.1:{port}/0",
            "no password": f"redis://127.0.0.1:{port}/0",
            "no such database": f"redis://:{PASSWORD}@127.0.0.1:{port}/99",
            "not redis": f"redis://:{PASSWORD}@127.0.0.1:{port}/0",
        }[case]
        path = config_file(tmp_path, url, "ws://127.0.0.1:9/ws")
        async with daemon_process(["--config", str(path)]) as daemon:
            assert await daemon.wait(within=10) == 2
        assert reason in daemon.output and "waiting" not in daemon.output
        code, shown = await status(path)
        watch = await trio.to_thread.run_sync(partial(run_cli, "watch", "--config", str(path)))
        assert code == 2 and reason in shown
        assert watch.returncode == 2 and reason in watch.stderr
        shown += watch.stdout + watch.stderr
        for secret in (PASSWORD, WRONG):
            assert secret not in daemon.output and secret not in shown
    finally:
        server.kill()


async def test_a_redis_that_answers_late_but_refuses_still_ends_the_start(tmp_path: Path) -> None:
    server = RedisServer(password=PASSWORD)  # its port is chosen, nothing listens yet
    path = config_file(tmp_path, f"redis://:{WRONG}@127.0.0.1:{server.port}/0", "ws://127.0.0.1:9/ws")
    try:
        async with daemon_process(["--config", str(path)]) as daemon:
            await daemon.wait_log("does not answer yet")  # not there: waited for
            server.start()
            assert await daemon.wait(within=10) == 2
        assert "refuses tickerd: authentication failed (invalid username-password pair" in daemon.output
        assert WRONG not in daemon.output and "Traceback" not in daemon.output
    finally:
        server.kill()


async def test_a_password_rotated_while_running_is_an_error_in_log_and_status_then_heals(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = RedisServer(password=PASSWORD)
    server.start()
    admin = redis.Redis(port=server.port, password=PASSWORD)
    try:
        kraken = await start_fake(nursery, FakeKraken())
        path = config_file(tmp_path, server.url, kraken.url)
        async with daemon_process(["--config", str(path)]) as daemon:
            with trio.fail_after(20):
                await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
            await kraken.push("BTC/USD", last=1.0)
            await until_redis(admin, lambda: last_price(admin) == 1.0)

            rotate(admin, ROTATED)
            await kraken.push("BTC/USD", last=2.0)
            await daemon.wait_log("ERROR")
            await kraken.push("BTC/USD", last=3.0)  # held while refused
            code, shown = await status(path)  # with the daemon's (now wrong) password
            assert code == 2 and "refuses tickerd: authentication failed" in shown

            admin.config_set("requirepass", PASSWORD)  # put right: the retries get through
            await until_redis(admin, lambda: last_price(admin) == 3.0)
            await daemon.wait_log("Redis is back")
        log = daemon.output
        assert log.count("Redis refuses tickerd: authentication failed") == 1  # not per retry
        for secret in (PASSWORD, ROTATED):
            assert secret not in log and secret not in shown
    finally:
        admin.close()
        server.kill()


async def test_health_tells_why_redis_refuses_writes(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(password=PASSWORD)
    server.start()
    admin = redis.Redis(port=server.port, password=PASSWORD)
    errors: list[str] = []
    handler = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    try:
        kraken = await start_fake(nursery, FakeKraken())
        config = make_config("", {"kraken": kraken}, {"kraken": ["BTC/USD"]}, redis={"url": server.url})
        daemon = await start_daemon(nursery, config)
        writer = daemon.writer
        retried = trio.Event()
        failures: list[redis.RedisError] = []
        failed = writer._failed

        def count(error: redis.RedisError) -> None:  # a spy on the writer's failed attempts
            failures.append(error)
            failed(error)
            if len(failures) == 3:
                retried.set()

        monkeypatch.setattr(writer, "_failed", count)
        with trio.fail_after(10):
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
            rotate(admin, ROTATED)
            await kraken.push("BTC/USD", last=2.0)
            await retried.wait()
        health = daemon.health().writer
        assert not health.redis_up
        assert (health.reason or "").startswith("Redis refuses tickerd: authentication failed")
        assert errors == [f"{health.reason}; holding the latest values and retrying"]  # once, not per retry
        assert Metrics(daemon).healthz() == (503, f"down: {health.reason}\n")

        admin.config_set("requirepass", PASSWORD)
        with trio.fail_after(10):  # retried 2 s apart at most
            while not writer.redis_up:
                await writer.redis_state_changed()
        assert daemon.health().writer.reason is None and last_price(admin) == 2.0
    finally:
        logger.remove(handler)
        admin.close()
        server.kill()


async def test_health_records_are_back_right_after_redis_restarts_empty(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    # A long interval: waiting for the next steady-state write would take half a minute.
    path = config_file(tmp_path, redis_server.url, kraken.url, interval=30.0)
    client = redis.Redis(port=redis_server.port)

    def all_records() -> bool:
        return bool(client.exists(LAYOUT.heartbeat(), LAYOUT.health("kraken")) == 2)

    async with daemon_process(["--config", str(path)]) as daemon:
        with trio.fail_after(20):
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
        await kraken.push("BTC/USD", last=1.0)
        await until_redis(client, lambda: all_records() and last_price(client) == 1.0)

        redis_server.restart()
        await kraken.push("BTC/USD", last=2.0)  # tickers flow again at once
        await until_redis(client, lambda: all_records() and last_price(client) == 2.0, within=3)
        code, shown = await status(path)
        assert code == 0, shown
        assert daemon.process.returncode is None
    client.close()


async def test_a_hung_redis_holds_the_latest_values_and_gets_them_after(
    nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    # A long health interval: no health record write waits out its own socket timeout first.
    path = config_file(tmp_path, redis_server.url, kraken.url, interval=30.0)
    client = redis.Redis(port=redis_server.port)
    async with daemon_process(["--config", str(path)]) as daemon:
        with trio.fail_after(20):
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
        await kraken.push("BTC/USD", last=1.0)
        await until_redis(client, lambda: last_price(client) == 1.0)

        redis_server.pause()
        await kraken.push("BTC/USD", last=2.0)
        await daemon.wait_log("Redis unreachable")  # the write in flight timed out
        await kraken.push("BTC/USD", last=3.0)
        redis_server.resume()
        await until_redis(client, lambda: last_price(client) == 3.0, within=15)
        await daemon.wait_log("Redis is back")
    client.close()
