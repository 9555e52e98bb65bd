"""The bridge from trio to redis-py: one long-lived thread, and the packed write it runs.

redis-py has no trio API, so every call to Redis happens in a thread.  This module knows how
to get there cheaply and how to send a list of commands in one round trip; it knows nothing
of tickers, coalescing or key names (:mod:`tickerd.layout` builds the commands).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import outcome
import redis
import trio

from tickerd.layout import Command

A = TypeVar("A")
R = TypeVar("R")

#: The writer thread's name (``ps -L``, py-spy; tests wait for it before cleaning up keys).
WRITER_THREAD = "tickerd-redis"


class WorkerThread:
    """The writer's own long-lived thread for redis-py's blocking calls.

    ``trio.to_thread.run_sync`` per batch costs more than a small batch's write: a capacity
    limiter, a job object and an OS thread rename for every call (~15 % of the daemon's CPU
    at 5,000 frames/s).  One thread fed by a queue does the same hop for the price of a
    queue put and a ``run_sync_soon``.

    A call in hand cannot be interrupted (redis-py blocks in a socket read until its timeout),
    so a cancelled caller *abandons* it: ``run_sync`` raises :class:`trio.Cancelled` at once,
    the thread finishes the job when it can and its outcome is dropped.  Jobs still run one at
    a time in order, so a later write never overtakes an abandoned one.  The thread is a daemon
    thread: a process that exits with a job hung in it does not wait for it (the writer's
    shutdown grace is a hard bound).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        """Let the thread end after the jobs in hand (if any); a later call starts a new one."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def run_sync(self, fn: Callable[[A], R], arg: A) -> R:
        """``fn(arg)`` in the thread; its result is returned (its exception raised) here."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=WRITER_THREAD, daemon=True)
            self._thread.start()
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()
        abandoned = False

        def deliver(result: outcome.Outcome[R]) -> None:  # in trio's thread, like the abort
            if not abandoned:
                trio.lowlevel.reschedule(task, result)

        def job() -> None:
            # No local holds the outcome: a failed write's traceback ends in this frame, and a
            # local pointing back at it would be a reference cycle (see _scrubbed).
            with contextlib.suppress(trio.RunFinishedError):  # abandoned, and trio is gone
                token.run_sync_soon(deliver, _scrubbed(outcome.capture(fn, arg)))

        def abort(_: object) -> trio.lowlevel.Abort:
            nonlocal abandoned
            abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        self._jobs.put(job)
        result: R = await trio.lowlevel.wait_task_rescheduled(abort)
        return result


def _scrubbed(result: outcome.Outcome[R]) -> outcome.Outcome[R]:
    """``result``, with every frame of a failure's tracebacks cleared of its locals.

    A failed write's exception holds frames that hold the batch and its encoded commands, and
    redis-py's connect keeps the socket error in a local of a frame on that error's own
    traceback: a reference cycle.  Only the cycle collector frees such garbage, late on a large
    heap, and an outage makes a failure per retry (tests/test_faults_memory.py: 89.5 MiB held
    after 20 s at 1,000 symbols with the collector off).  Cleared frames reference nothing, so
    a failed attempt's data goes when the exception does; the tracebacks keep their line
    numbers, so a report still says where it failed.
    """
    if isinstance(result, outcome.Error):
        errors: list[BaseException | None] = [result.error]
        seen: set[int] = set()
        while errors:
            error = errors.pop()
            if error is not None and id(error) not in seen:
                seen.add(id(error))
                traceback.clear_frames(error.__traceback__)
                errors += (error.__cause__, error.__context__)
    return result


class Reconnects:
    """Counts how often a pooled connection was re-established.

    redis-py reconnects silently: a connection found dead when taken from the pool (a Redis
    restarted while the writer was idle) is replaced before the command goes out, so no
    error tells the writer.  But a restarted server holds nothing, health records included,
    so the writer needs to know: redis-py calls a connection's connect callbacks on every
    reconnect, and this is one.  A connection is watched from the first time it is seen (an
    identity check per round trip, nothing more).
    """

    def __init__(self) -> None:
        #: Reconnects so far (incremented in the writer thread, read by the event loop
        #: after the round trip returned).
        self.count = 0
        self._watched: object = None

    def watch(self, connection: Any) -> None:
        if connection is not self._watched:
            connection.register_connect_callback(self._reconnected)  # idempotent per connection
            self._watched = connection

    def _reconnected(self, _connection: object) -> None:
        self.count += 1


def execute(client: redis.Redis, commands: Sequence[Command], reconnects: Reconnects | None = None) -> None:
    """Send ``commands`` in one round trip and read a reply each (blocking: a worker thread).

    The commands go through a pooled connection directly (pack all, send once, read one
    reply each): redis-py's Pipeline object costs ~45 µs more per batch and ~1.6 µs more
    per command, which at a steady 5,000 frames/s (a batch per frame or two) is most of
    what the writer spends.  The first error reply is raised (a :class:`redis.RedisError`).
    ``reconnects`` counts the connection's re-establishments.
    """
    pool = client.connection_pool
    connection: Any = pool.get_connection()  # redis-py's Connection methods are untyped
    if reconnects is not None:
        reconnects.watch(connection)
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        for _ in commands:
            connection.read_response()  # raises the first error reply
    except BaseException:
        connection.disconnect()  # replies may be left unread: this socket is not reused
        raise
    finally:
        pool.release(connection)
