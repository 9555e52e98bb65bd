"""What ``tickerd run`` tells systemd: ready, stopping, its status, and that its loop is alive.

A unit with ``Type=notify`` (``deploy/systemd/``) passes ``NOTIFY_SOCKET``; sd_notify(3) is one
datagram of newline-separated ``KEY=value`` lines sent to that ``AF_UNIX`` socket (a name that
starts with ``@`` is in the abstract namespace).  tickerd sends:

* ``READY=1`` once :func:`tickerd.serve` has started: the lease on the prefix is taken (Redis
  answers), the writer runs and the subscription source's first set is applied (and the
  metrics port serves, when asked for).  Until then systemd reports the unit as starting, and
  units ordered after it wait;
* ``STATUS=``: the ``/healthz`` verdict in one line (``degraded: 40 symbols on 3 exchanges;
  binance: reconnecting``), which ``systemctl status`` shows, again on health changes (at
  most once per :data:`STATUS_EVERY`, and every ``health.interval``, since an outage of Redis
  fires no health change);
* ``STOPPING=1`` when a signal starts the shutdown (the flush to Redis may take up to
  ``shutdown_grace``);
* ``WATCHDOG=1`` every half of ``WatchdogSec`` (``WATCHDOG_USEC``), unless ``WATCHDOG_PID``
  names another process.  The pings come from a task of the trio loop, not a thread, so a loop
  blocked by a synchronous call stops them and systemd restarts the process: that is the
  failure a thread would hide.

Without ``NOTIFY_SOCKET`` nothing is opened and nothing is sent.  A message systemd does not
take is logged once and never stops the daemon.

Sent from a trio socket here rather than through a library: ``sdnotify`` (2017) and
``systemd-watchdog`` send with blocking stdlib sockets from the caller's thread, and
``systemd-python`` is a C extension built against libsystemd; the protocol is one ``sendto``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import trio
from loguru import logger

from tickerd.health import LEVELS, assess_daemon
from tickerd.snapshots import DaemonHealth

if TYPE_CHECKING:
    from tickerd.daemon import TickerDaemon

#: Seconds a message may wait for room in systemd's socket queue before it is dropped (a
#: watchdog ping comes again; a start without its ``READY=1`` times out and is retried).
SEND_TIMEOUT = 1.0
#: Seconds between two status messages at most once: a burst of health changes (symbols
#: turning fresh one by one at start) is one message.
STATUS_EVERY = 1.0


def describe(health: DaemonHealth) -> str:
    """The one-line status: ``/healthz``'s level, what is collected, and the reasons."""
    level, reasons = assess_daemon(health)
    exchanges = health.exchanges
    symbols = sum(len(snapshot.symbols) for snapshot in exchanges.values())
    text = f"{LEVELS[level]}: {_count(symbols, 'symbol')} on {_count(len(exchanges), 'exchange')}"
    return "; ".join([text, *reasons])


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


class Notifier:
    """The notification socket of one process (a context manager: the socket is open inside).

    ``address`` is ``NOTIFY_SOCKET`` (``@name`` for the abstract namespace), ``None`` when there
    is none; ``watchdog`` the seconds between two ``WATCHDOG=1``, ``None`` for no watchdog.
    """

    def __init__(self, address: str | None = None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address else None
        self._socket: trio.socket.SocketType | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> Notifier:
        """The notifier systemd's variables describe for process ``pid`` (this one by default)."""
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        return cls(address, _watchdog_interval(environ, os.getpid() if pid is None else pid))

    @property
    def enabled(self) -> bool:
        """Whether there is a service manager to tell anything."""
        return self.address is not None

    def __enter__(self) -> Notifier:
        if self.address is not None:
            self._socket = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def send(self, *assignments: str) -> None:
        """One message of ``KEY=value`` assignments (a no-op without ``NOTIFY_SOCKET``)."""
        if self._socket is None or self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        message = "\n".join(assignments).encode()
        error = f"no room in its queue for {SEND_TIMEOUT:g} s"
        with trio.move_on_after(SEND_TIMEOUT):
            try:
                await self._socket.sendto(message, target)
                self._failing = False
                return
            except OSError as exc:
                error = exc.strerror or str(exc)
        if not self._failing:  # once per run of failures, not once per watchdog ping
            logger.warning("cannot notify systemd at {address}: {error}", address=self.address, error=error)
        self._failing = True

    async def status(self, text: str) -> None:
        """``STATUS=text`` (one line: a newline would start another assignment)."""
        await self.send(f"STATUS={' '.join(text.split())}")

    async def keep_alive(self) -> None:
        """``WATCHDOG=1`` every :attr:`watchdog` seconds until cancelled (returns at once when
        systemd watches nothing)."""
        if self.watchdog is None or self._socket is None:
            return
        while True:
            await self.send("WATCHDOG=1")
            await trio.sleep(self.watchdog)

    async def follow(self, daemon: TickerDaemon) -> None:
        """``READY=1`` with the status now (the daemon has started), then the status whenever
        it changes, until cancelled."""
        shown = describe(daemon.health())
        await self.send("READY=1", f"STATUS={shown}")
        if self._socket is None:
            return
        while True:
            with trio.move_on_after(daemon.config.health.interval):
                await daemon.health_changed()
            await trio.sleep(STATUS_EVERY)  # what changes meanwhile goes out with it
            text = describe(daemon.health())
            if text != shown:
                await self.status(text)
                shown = text

    async def stopping(self) -> None:
        """``STOPPING=1``: the shutdown has begun."""
        await self.send("STOPPING=1", "STATUS=stopping: writing the latest tickers to Redis")


def _watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) recommends; ``None``
    when it is unset, unusable (logged), or ``WATCHDOG_PID`` names another process."""
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.strip() != str(pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        usec = 0
    if usec <= 0:
        logger.warning(
            "WATCHDOG_USEC={raw!r} is not a positive number of microseconds: no watchdog pings", raw=raw
        )
        return None
    return usec / 2e6
