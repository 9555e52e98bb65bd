"""Real processes for fault tests: redis-servers of a test's own and the daemon as a subprocess.

Fault tests break servers (kill -9, SIGSTOP, restart empty, passwords), so they never touch the
shared Redis: each starts a :class:`RedisServer` on a free port.  The daemon runs as
``python -m tickerd`` (:class:`DaemonProcess`), exactly as an operator runs it, and its log is
read as it is written, so tests wait on log lines and on Redis, never on sleeps.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis
import trio
import trustme

from tickerd.broadcast import Broadcast


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers a test starts itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tls_files(directory: Path) -> Path:
    """A CA and a certificate for 127.0.0.1 and localhost, as ``ca.pem``, ``cert.pem`` and
    ``key.pem`` in ``directory``: what ``RedisServer(tls=directory)`` serves and clients trust."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
    cert.private_key_pem.write_to_path(directory / "key.pem")
    ca.cert_pem.write_to_path(directory / "ca.pem")
    return directory


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1, which the test may break at will."""

    def __init__(
        self,
        *,
        password: str | None = None,
        tls: Path | None = None,
        unix_socket: Path | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        #: More of redis-server's options (``--cluster-enabled yes``, ``--replicaof …``).
        self.args = tuple(args)
        self.password = password
        #: A directory with ``cert.pem``, ``key.pem`` and ``ca.pem``: the server speaks TLS only.
        self.tls = tls
        #: A Unix socket the server listens on besides its port.
        self.unix_socket = unix_socket
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """The URL a client uses (with the password, when the server has one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start an empty server on :attr:`port` and return once it accepts connections."""
        command = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls:
            command += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            for option, name in (("cert", "cert"), ("key", "key"), ("ca-cert", "ca")):
                command += [f"--tls-{option}-file", str(self.tls / f"{name}.pem")]
        else:
            command += ["--port", str(self.port)]
        if self.unix_socket:
            command += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        if self.password:
            command += ["--requirepass", self.password]
        command += self.args
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        for line in self.process.stdout:  # the server's own "ready" line
            if b"Ready to accept connections" in line:
                return
        raise RuntimeError("redis-server exited before it was ready")

    def kill(self) -> None:
        """``kill -9``: the server vanishes with everything it held."""
        if self.process is not None:
            if self.paused:
                self.resume()
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server hangs, its connections stay open and unanswered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: the hung server answers again."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False


class ClusterServers:
    """A Redis Cluster of the test's own: three masters with a replica each on free ports
    (``redis-server --cluster-enabled yes``), joined by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(
                args=(
                    *("--cluster-enabled", "yes", "--dir", str(directory)),
                    *("--cluster-config-file", f"nodes-{index}.conf", "--cluster-node-timeout", "2000"),
                    # The bus port is the client port + 10000 unless named: past 65535 for
                    # many of the free ports the system hands out.
                    *("--cluster-port", str(free_port())),
                )
            )
            for index in range(6)
        ]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming two of the nodes (the client learns the others)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])

    def start(self) -> None:
        """Start the nodes, make them one cluster and return once every node sees it whole."""
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        for node in self.nodes:
            with redis.Redis(port=node.port) as client:
                # another process's state: nothing to wait on but its answers
                while not (client.cluster("INFO")["cluster_state"] == "ok" and _in_sync(client.role())):
                    assert time.monotonic() < deadline, "the cluster did not come up"
                    time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def _in_sync(role: list[Any]) -> bool:
    """Whether a node's ``ROLE`` says it is a master, or a replica connected to its master (a
    replica still in its handshake would refuse a manual failover)."""
    return bool(role[0] == b"master" or role[3] == b"connected")


class SentinelServers:
    """A master, its replica and one Sentinel watching them (``redis-server --sentinel``),
    on free ports; the master's name is :attr:`SERVICE`."""

    SERVICE = "tickerd-test"

    def __init__(self, directory: Path) -> None:
        # in the test's directory: a master writes an RDB file for its replica's first sync
        self.master = RedisServer(args=("--dir", str(directory)))
        self.replica = RedisServer(
            args=("--dir", str(directory), "--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.port = free_port()
        self.config = directory / "sentinel.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.SERVICE}/0"

    def start(self) -> None:
        """Start the master, the replica and the Sentinel; return once the Sentinel knows the
        replica (a failover needs one to promote)."""
        self.master.start()
        self.replica.start()
        self.sentinel = subprocess.Popen(
            ["redis-server", str(self.config), "--sentinel"], stdout=subprocess.PIPE
        )
        assert self.sentinel.stdout is not None
        for line in self.sentinel.stdout:  # the Sentinel's own log lines
            if b"+slave " in line:
                return
        raise RuntimeError("the Sentinel exited before it saw the replica")

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait()
        self.replica.kill()
        self.master.kill()


class DaemonProcess:
    """``python -m tickerd ARGS`` with its standard error read continuously into :attr:`log`."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = bytearray()
        #: True once the daemon closed its standard error (it exited): no more log will come.
        self.ended = False
        self._grew: Broadcast[None] = Broadcast()

    @property
    def output(self) -> str:
        """Everything the daemon logged so far."""
        return self.log.decode(errors="replace")

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.log += chunk
            self._grew.fire(None)
        self.ended = True
        self._grew.fire(None)

    async def wait_log(self, marker: str, *, within: float = 20.0) -> None:
        """Return once ``marker`` appears in the log (the log up to now included)."""
        with trio.fail_after(within):
            while marker.encode() not in self.log and not self.ended:
                await self._grew.wait()
        assert marker.encode() in self.log, f"{marker!r} not logged:\n{self.output}"

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, *, within: float = 20.0) -> int:
        """The exit status, once the daemon has exited."""
        with trio.fail_after(within):
            return await self.process.wait()


@asynccontextmanager
async def daemon_process(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    module: str = "tickerd",
) -> AsyncIterator[DaemonProcess]:
    """Run the daemon (``python -m MODULE ARGS``) for the duration of the block; killed at the
    end if still running."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", module, *args],
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    daemon = DaemonProcess(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon._read)
        try:
            yield daemon
        finally:
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(5, shield=True):
                await process.wait()
            nursery.cancel_scope.cancel()


async def until_redis(client: redis.Redis, predicate: Callable[[], bool], within: float = 10) -> None:
    """Return once ``predicate()`` holds, re-checked on every keyspace event of the test's own
    server (the daemon, another process, writes it)."""
    client.config_set("notify-keyspace-events", "KEA")  # keyevents (E) too: a test may also wait on those
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.psubscribe("__keyspace@0__:*")
    try:
        with trio.fail_after(within):
            while not predicate():
                await trio.to_thread.run_sync(pubsub.get_message, False, 0.5)
    finally:
        pubsub.close()
