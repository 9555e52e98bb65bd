"""``tickerd run`` (:func:`run_until_signalled`) in a trio loop that SIGUSR1 blocks, for the
watchdog test: ``python -m tests.blockable_daemon CONFIG SECONDS``.

On SIGUSR1 a task of the loop makes the mistake the watchdog exists for, a synchronous call
(``time.sleep(SECONDS)``) in the trio loop, and marks its start and end on ``NOTIFY_SOCKET``
(``X_TEST=blocking``, ``X_TEST=unblocked``), so the test knows which watchdog pings came while
the loop was blocked without timing anything.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import trio

from tickerd import config as config_module
from tickerd.commands.run import run_until_signalled


def mark(text: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"X_TEST={text}".encode(), address)


async def block_on_sigusr1(seconds: float) -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            mark("blocking")
            time.sleep(seconds)  # noqa: ASYNC251 (the point: the loop stops for this long)
            mark("unblocked")


async def main(path: str, seconds: float) -> int:
    config = config_module.load(path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(block_on_sigusr1, seconds)
        status = await run_until_signalled(config)
        nursery.cancel_scope.cancel()
    return status


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1], float(sys.argv[2])))
