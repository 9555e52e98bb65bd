"""systemd: the units (checked by ``systemd-analyze``) and the notify protocol, with a socket
standing in for systemd's (:class:`FakeSystemd`) and the daemon run as an operator runs it."""

from __future__ import annotations

import configparser
import itertools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from tests.conftest import REDIS_URL, Database, make_config, start_daemon, start_fake
from tests.processes import RedisServer, daemon_process
from tickerd.commands.main import build_parser
from tickerd.sources import tables
from tickerd.systemd import Notifier
from tickerd.testing import FakeKraken

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
#: Where the units expect tickerd (a venv in /opt/tickerd).
INSTALLED = "/opt/tickerd/bin/tickerd"
#: The settings in which the template differs from tickerd.service: its instance's own files,
#: state directory, journal identifier and description.
PER_INSTANCE = {
    "Description",
    "ExecStart",
    "EnvironmentFile",
    "StateDirectory",
    "Environment",
    "SyslogIdentifier",
}


class FakeSystemd:
    """The notification socket systemd holds for a ``Type=notify`` service: every datagram a
    process sends to it, as its lines, in the order they arrived."""

    def __init__(self, address: str) -> None:
        #: ``NOTIFY_SOCKET`` for the process under test (``@name``: the abstract namespace).
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    def pending(self) -> list[list[str]]:
        """The messages received and not read yet (none waited for)."""
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return messages

    async def receive(self) -> list[str]:
        """The next message."""
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                return self.sock.recv(4096).decode().split("\n")
            except BlockingIOError:  # pragma: no cover (woken for nothing)
                continue

    async def until(self, line: str, *, within: float = 20.0) -> list[list[str]]:
        """The messages received up to and including the first one holding ``line``."""
        messages: list[list[str]] = []
        with trio.fail_after(within):
            while line not in (messages[-1] if messages else []):
                messages.append(await self.receive())
        return messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(tmp_path / "notify"))
    yield fake
    fake.close()


def flat(messages: list[list[str]]) -> list[str]:
    return [line for message in messages for line in message]


def status_of(message: list[str]) -> str:
    return next(line.removeprefix("STATUS=") for line in message if line.startswith("STATUS="))


# -- the units ---------------------------------------------------------------------------------


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def checkable(name: str, folder: Path) -> Path:
    """The unit in ``folder``, its ``ExecStart`` pointing at this environment's ``tickerd``
    (systemd-analyze checks that the program exists)."""
    here = shutil.which("tickerd", path=os.path.dirname(sys.executable))
    assert here is not None
    text = (UNITS / name).read_text()
    assert INSTALLED in text
    path = folder / name
    path.write_text(text.replace(INSTALLED, here))
    return path


@pytest.mark.parametrize("name", ["tickerd.service", "tickerd@.service"])
def test_the_units_pass_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(checkable(name, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Not only the status: an unknown or misspelt key is a warning on standard error.
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


@pytest.mark.parametrize("name", ["tickerd.service", "tickerd@.service"])
def test_the_units_are_hardened(name: str, tmp_path: Path) -> None:
    """systemd's own exposure score, offline: at most 2.0 ("OK"; the units score 1.3).  The
    threshold is in tenths."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(checkable(name, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level" in result.stdout


def test_the_units_are_notify_services_with_a_watchdog() -> None:
    for name in ("tickerd.service", "tickerd@.service"):
        service = unit(name)["Service"]
        assert (service["Type"], service["NotifyAccess"], service["WatchdogSec"]) == ("notify", "main", "30s")
        assert service["Restart"] == "on-failure"
        assert service["KillMode"] == "mixed"  # tickerd stops its private redis-server after the flush


def test_the_template_is_the_service_per_instance() -> None:
    """Only the instance's own settings differ; those name the instance (``%i``)."""
    single, template = unit("tickerd.service"), unit("tickerd@.service")
    assert single.sections() == template.sections()
    for section in single.sections():
        assert single[section].keys() - {"SyslogIdentifier"} == template[section].keys() - {
            "SyslogIdentifier"
        }
        for key, value in template[section].items():
            if key in PER_INSTANCE:
                assert "%i" in value, key
            else:
                assert single[section][key] == value, key
    config = "/etc/tickerd/%i.toml"
    assert (
        template["Service"]["ExecStart"].split()
        == single["Service"]["ExecStart"].replace("/etc/tickerd/tickerd.toml", config).split()
    )


@pytest.mark.parametrize("name", ["tickerd.service", "tickerd@.service"])
def test_exec_start_is_a_tickerd_command_line(name: str) -> None:
    """``tickerd``'s own parser takes it, with and without options from the environment file."""
    program, *argv = shlex.split(unit(name)["Service"]["ExecStart"])
    assert program == INSTALLED
    assert argv[-1] == "$TICKERD_OPTIONS"  # unset: no argument at all (systemd.service(5))
    for options in ([], ["--metrics-port", "9108"]):
        args = build_parser(argv).parse_args([*argv[:-1], *options])
        assert args.command == "run"
        assert args.config == (
            "/etc/tickerd/tickerd.toml" if name == "tickerd.service" else "/etc/tickerd/%i.toml"
        )


# -- the protocol ------------------------------------------------------------------------------


async def test_without_notify_socket_nothing_is_opened_or_sent() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog is None
    with notifier, trio.fail_after(1):
        await notifier.send("READY=1")
        await notifier.keep_alive()  # returns at once: nothing to ping
        assert notifier._socket is None


@pytest.mark.parametrize("abstract", [False, True])
async def test_messages_reach_a_path_or_an_abstract_socket(abstract: bool, tmp_path: Path) -> None:
    address = f"@tickerd-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    systemd = FakeSystemd(address)
    try:
        with Notifier.from_environment({"NOTIFY_SOCKET": address}) as notifier:
            await notifier.send("READY=1", "STATUS=ok")
            await notifier.status("two\nlines")  # a newline would be a second assignment
            await notifier.stopping()
        assert systemd.pending() == [
            ["READY=1", "STATUS=ok"],
            ["STATUS=two lines"],
            ["STOPPING=1", "STATUS=stopping: writing the latest tickers to Redis"],
        ]
    finally:
        systemd.close()


async def test_watchdog_pings_every_half_of_watchdog_usec(
    systemd: FakeSystemd, clock: trio.testing.MockClock
) -> None:
    environ = {
        "NOTIFY_SOCKET": systemd.address,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    times = []
    with Notifier.from_environment(environ) as notifier:
        assert notifier.watchdog == 15.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.keep_alive)
            for _ in range(4):
                assert await systemd.receive() == ["WATCHDOG=1"]
                times.append(trio.current_time())
            nursery.cancel_scope.cancel()
    assert [later - earlier for earlier, later in itertools.pairwise(times)] == [15.0, 15.0, 15.0]


def test_no_watchdog_for_another_process_or_an_unusable_value(logs: list[str]) -> None:
    base = {"NOTIFY_SOCKET": "/run/notify"}
    assert Notifier.from_environment({**base, "WATCHDOG_USEC": "1000000"}, pid=42).watchdog == 0.5
    assert Notifier.from_environment(
        {**base, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, pid=42
    ).watchdog
    assert (
        Notifier.from_environment({**base, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}, pid=42).watchdog
        is None
    )
    for bad in ("soon", "0", "-5"):
        assert Notifier.from_environment({**base, "WATCHDOG_USEC": bad}).watchdog is None
    assert sum("is not a positive number of microseconds" in line for line in logs) == 3


async def test_a_socket_nobody_listens_on_is_logged_once(tmp_path: Path, logs: list[str]) -> None:
    with Notifier(str(tmp_path / "gone"), watchdog=1.0) as notifier:
        for _ in range(3):
            await notifier.send("WATCHDOG=1")
    assert [line for line in logs if "cannot notify systemd" in line] == [
        f"cannot notify systemd at {tmp_path / 'gone'}: No such file or directory"
    ]


async def test_ready_carries_the_status_which_follows_health(
    nursery: trio.Nursery, prefix: str, systemd: FakeSystemd
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    kraken.reject("FOO/USD")
    symbols = {"kraken": ["BTC/USD", "FOO/USD"]}
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, symbols))
    with Notifier(systemd.address) as notifier, trio.fail_after(20):
        nursery.start_soon(notifier.follow, daemon)
        [ready] = await systemd.until("READY=1")
        status = status_of(ready)  # connecting, or already refused the symbol
        assert status.startswith("degraded: 2 symbols on 1 exchange; kraken: ")
        while status != "degraded: 2 symbols on 1 exchange; kraken: 1 rejected symbol(s)":
            status = status_of(await systemd.receive())
        daemon.remove("kraken", "FOO/USD")
        assert await systemd.receive() == ["STATUS=healthy: 1 symbol on 1 exchange"]


# -- the daemon under a stand-in systemd ---------------------------------------------------------


def write_config(path: Path, prefix: str, redis_url: str = REDIS_URL, extra: str = "") -> Path:
    path.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n{extra}')
    return path


async def test_ready_once_the_subscriptions_are_loaded_and_stopping_on_sigterm(
    nursery: trio.Nursery, prefix: str, db: Database, systemd: FakeSystemd, tmp_path: Path
) -> None:
    """READY=1 waits for the subscription source's first read (held up here by a lock on the
    symbols table), and its status already counts what was read."""
    kraken = await start_fake(nursery, FakeKraken())
    tables.init(db.conn, "tickerd")
    tables.add_symbol(db.conn, "tickerd", "kraken", "BTC/USD")
    extra = f'[database]\nurl = "{db.url}"\nrefresh = 3600.0\n[exchanges.kraken]\nurl = "{kraken.url}"\n'
    config = write_config(tmp_path / "tickerd.toml", prefix, extra=extra)
    with psycopg.connect(db.url) as locker:
        locker.execute("LOCK TABLE tickerd.symbols IN ACCESS EXCLUSIVE MODE")
        async with daemon_process(
            ["run", "--config", str(config)], env={"NOTIFY_SOCKET": systemd.address}
        ) as daemon:
            waiting = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'tickerd' AND wait_event_type = 'Lock'"
            )
            with trio.fail_after(20):
                # PostgreSQL tells no one that a session waits for a lock: poll for it.
                while (await db.execute(waiting)) != [(1,)]:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            assert "READY=1" not in flat(systemd.pending())
            assert not kraken.is_subscribed("BTC/USD")

            locker.rollback()
            ready = (await systemd.until("READY=1"))[-1]
            assert status_of(ready).startswith("degraded: 1 symbol on 1 exchange; kraken: ")
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))

            daemon.signal(signal.SIGTERM)
            await systemd.until("STOPPING=1")
            assert await daemon.wait() == 0


async def test_ready_waits_for_redis(prefix: str, systemd: FakeSystemd, tmp_path: Path) -> None:
    """No READY=1 while Redis does not answer (the lease on the prefix cannot be taken)."""
    server = RedisServer()
    config = write_config(tmp_path / "tickerd.toml", prefix, redis_url=server.url)
    try:
        async with daemon_process(
            ["run", "--config", str(config)], env={"NOTIFY_SOCKET": systemd.address}
        ) as daemon:
            await daemon.wait_log("cannot take the lease")
            assert "READY=1" not in flat(systemd.pending())
            await trio.to_thread.run_sync(server.start)
            await systemd.until("READY=1")
            daemon.signal(signal.SIGTERM)
            await systemd.until("STOPPING=1")
            assert await daemon.wait() == 0
    finally:
        server.kill()


async def test_watchdog_pings_stop_while_the_loop_is_blocked(
    prefix: str, systemd: FakeSystemd, tmp_path: Path
) -> None:
    """A synchronous call that blocks the trio loop for 1.5 s (``WatchdogSec`` 0.2 s, a ping
    every 0.1 s) silences the watchdog until it returns: systemd would restart the process."""
    config = write_config(tmp_path / "tickerd.toml", prefix)
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
    async with daemon_process(
        [str(config), "1.5"], env=env, cwd=ROOT, module="tests.blockable_daemon"
    ) as daemon:
        await systemd.until("READY=1")
        for _ in range(3):
            await systemd.until("WATCHDOG=1", within=2)

        daemon.signal(signal.SIGUSR1)
        await systemd.until("X_TEST=blocking")
        began = trio.current_time()
        while_blocked = await systemd.until("X_TEST=unblocked")
        assert trio.current_time() - began >= 1.4  # 14 pings were due meanwhile
        assert "WATCHDOG=1" not in flat(while_blocked)
        await systemd.until("WATCHDOG=1", within=2)  # and they resume

        daemon.signal(signal.SIGTERM)
        await systemd.until("STOPPING=1")
        assert await daemon.wait() == 0
