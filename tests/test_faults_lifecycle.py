"""Faults of a daemon's life on its prefix: a second daemon, kill -9, a start that fails.

Real processes only: each test has its own redis-server and runs ``python -m tickerd``.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path

import pytest
import redis
import trio

import tickerd
from tests.conftest import Updates, run_cli, start_fake
from tests.processes import DaemonProcess, RedisServer, daemon_process, until_redis
from tickerd.config import structure
from tickerd.layout import RedisLayout
from tickerd.lease import LeaseError
from tickerd.testing import FakeKraken

PREFIX = "trial:"
LAYOUT = RedisLayout(PREFIX)


class Trial:
    """One Kraken symbol on ``trial:`` of the test's own redis-server, with short health
    records (TTL 3 s) and lease (2 s), and the daemons a test starts on it."""

    def __init__(self, tmp_path: Path, kraken: FakeKraken, server: RedisServer) -> None:
        self.kraken = kraken
        self.client = redis.Redis.from_url(server.url)
        self.path = tmp_path / "tickerd.toml"
        self.path.write_text(
            f'[redis]\nurl = "{server.url}"\nprefix = "{PREFIX}"\nlease_expiry = 2.0\n'
            "[health]\ninterval = 1.0\n"
            f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = ["BTC/USD"]\n'
        )
        self.client.config_set("notify-keyspace-events", "Ex")
        self.expired = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self.expired.subscribe("__keyevent@0__:expired")

    async def wait_expired(self, *keys: str) -> None:
        """Return once Redis expired each of ``keys`` (keyspace notifications, no polling)."""
        gone: set[bytes] = set()
        with trio.fail_after(10):
            while not {key.encode() for key in keys} <= gone:
                message = await trio.to_thread.run_sync(self.expired.get_message, True, 0.5)
                if message:
                    gone.add(message["data"])

    def daemon(self, *args: str) -> AbstractAsyncContextManager[DaemonProcess]:
        return daemon_process(["--config", str(self.path), *args])

    async def running(self, daemon: DaemonProcess) -> None:
        """Wait until ``daemon`` runs, is subscribed, has written a ticker and its health record
        says so (written up to a second after the ticker: :data:`tickerd.monitor.COALESCE`)."""
        await daemon.wait_log("tickerd running")
        updates = Updates(self.client, PREFIX)
        with trio.fail_after(10):
            await self.kraken.wait_until(lambda: self.kraken.is_subscribed("BTC/USD"))
        await self.kraken.push("BTC/USD", last=100.0)
        await updates.wait_for(lambda r: r["last"] == 100.0)
        updates.close()

        def recorded() -> bool:
            heartbeat, exchanges = LAYOUT.read_health(self.client)
            return (
                heartbeat is not None
                and heartbeat.pid == daemon.process.pid
                and exchanges.keys() == {"kraken"}
                and not exchanges["kraken"].waiting
            )

        await until_redis(self.client, recorded)

    async def status(self) -> tuple[int, str]:
        result = await trio.to_thread.run_sync(lambda: run_cli("status", "--config", str(self.path)))
        return result.returncode, result.stdout

    def assert_records_of(self, daemon: DaemonProcess) -> None:
        """The heartbeat (``daemon``'s, running) and the Kraken record are there."""
        heartbeat, exchanges = LAYOUT.read_health(self.client)
        assert heartbeat is not None and heartbeat.state == "running"
        assert heartbeat.pid == daemon.process.pid and list(exchanges) == ["kraken"]


@pytest.fixture
async def trial(nursery: trio.Nursery, tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Trial]:
    setup = Trial(tmp_path, await start_fake(nursery, FakeKraken()), redis_server)
    yield setup
    setup.expired.close()
    setup.client.close()


@contextmanager
def port_in_use() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_second_daemon_on_the_prefix_exits_2_naming_the_holder(trial: Trial) -> None:
    async with trial.daemon() as first:
        await trial.running(first)
        connections = trial.kraken.connection_count
        async with trial.daemon() as second:
            assert await second.wait() == 2
        holder = f"tickerd pid {first.process.pid} on {socket.gethostname()}"
        assert f"prefix 'trial:' is owned by {holder}" in second.output
        assert trial.kraken.connection_count == connections  # the second connected nothing
        trial.assert_records_of(first)  # and touched nothing
        assert (await trial.status())[0] == 0
        first.signal(signal.SIGTERM)
        assert await first.wait() == 0
    assert not trial.client.exists(LAYOUT.lease())  # given back: the next start need not wait


async def test_after_kill_9_the_records_and_the_lease_expire_and_a_new_daemon_starts(trial: Trial) -> None:
    async with trial.daemon() as first:
        await trial.running(first)
        first.process.kill()  # kill -9: nothing is cleaned up, nothing renewed
        assert await first.wait() == -9

    await trial.wait_expired(LAYOUT.heartbeat(), LAYOUT.lease())  # TTLs 3 s and 2 s
    code, text = await trial.status()
    assert code == 2 and "tickerd is not running" in text

    async with trial.daemon() as second:
        await second.wait_log("took the lease on prefix 'trial:'")
        await trial.running(second)
        trial.assert_records_of(second)
        assert (await trial.status())[0] == 0


async def test_a_start_that_fails_leaves_the_running_daemon_untouched(trial: Trial) -> None:
    async with trial.daemon() as first:
        await trial.running(first)
        lease = trial.client.get(LAYOUT.lease())
        connections = trial.kraken.connection_count
        with port_in_use() as port:
            async with trial.daemon("--metrics-port", str(port)) as second:
                assert await second.wait() == 2
        assert f"--metrics-port {port}: " in second.output
        assert "lease" not in second.output  # it failed before it asked for the prefix
        assert trial.kraken.connection_count == connections
        assert trial.client.get(LAYOUT.lease()) == lease
        trial.assert_records_of(first)
        code, text = await trial.status()
        assert code == 0, text


async def test_a_holder_frozen_past_its_lease_stops_and_leaves_its_successor_alone(trial: Trial) -> None:
    async with trial.daemon() as first:
        await trial.running(first)
        first.signal(signal.SIGSTOP)  # a slow holder: it cannot renew
        await trial.wait_expired(LAYOUT.lease())
        async with trial.daemon() as second:
            await trial.running(second)
            lease = trial.client.get(LAYOUT.lease())
            first.signal(signal.SIGCONT)
            assert await first.wait() == 2
            holder = f"tickerd pid {second.process.pid} on {socket.gethostname()}"
            assert f"lost the lease on prefix 'trial:' to {holder}" in first.output
            assert trial.client.get(LAYOUT.lease()) == lease  # neither renewed nor deleted
            heartbeat, exchanges = LAYOUT.read_health(trial.client)
            assert heartbeat is not None and heartbeat.state == "running"  # no "stopped" from the first
            assert list(exchanges) == ["kraken"]  # nor its records deleted
            assert (await trial.status())[0] == 0


async def test_an_embedded_daemon_refused_by_redis_stops_at_once_without_the_password() -> None:
    server = RedisServer(password="right-one")
    server.start()
    try:
        config = structure({"redis": {"url": f"redis://:wrong-one@127.0.0.1:{server.port}/0"}})
        with (
            trio.fail_after(5),
            pytest.raises(LeaseError, match="refuses tickerd: authentication failed") as raised,
        ):
            await tickerd.serve(config)
        assert "wrong-one" not in str(raised.value)
    finally:
        server.kill()
