"""The writer's connection to a Redis Cluster: redis-py's cluster pipeline in a worker thread.

A cluster spreads the keys over masters by slot, moves slots, and fails a master over to its
replica; knowing where each key lives and following ``MOVED``/``ASK`` answers is what
redis-py's ``RedisCluster`` does, and doing it again over trio would be a second cluster client
to keep right.  So a batch goes out as one ``RedisCluster`` pipeline (``transaction=False``:
one write per master, the commands of each key to the master of its slot), run in a worker
thread.  The thread hop costs ~100 µs a batch, paid once per batch, not per ticker
(coalescing keeps batches few); the RESP connection of :mod:`tickerd.writer.connection`
stays the path of one server and of Sentinel.

The batch keeps its seam: :meth:`ClusterConnection.send` takes the commands and starts the
pipeline at once (in its own thread, so the writer goes on coalescing), :meth:`replies` waits
for it and raises the first error reply (after all the commands ran) or the failure that
stopped it, as :class:`~tickerd.writer.connection.RedisConnection` does.  A failure the pipeline
could not ride out (every retry of redis-py's spent while a master fails over) makes the
writer hold the batch and send it again, so nothing latest is lost; when it succeeds again
:attr:`reconnects` counts one, and the monitor writes its health records again.

What a cluster cannot take as the layout writes it is rewritten here, not in the layout
(one server takes it as it is, in fewer commands):

* ``MSET`` and multi-key ``DEL`` (the fullon layout's ``ticker_time`` keys): one command per
  key, since their keys are in different slots;
* the scripts the monotonic write calls by SHA (``EVALSHA``, :mod:`tickerd.monotonic`): loaded
  on every master outside the pipeline (redis-py's ``script_load``) before the first batch, and
  again before the next batch after a ``NOSCRIPT`` reply (a replica promoted by a failover, a
  master added, a ``SCRIPT FLUSH``), so the master that owns a key has them.

``tickers:{exchange}`` is one key, so one slot, and ``PUBLISH`` on any master reaches the
subscribers of every node of the cluster: the layout's keys and channels are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import outcome
import redis
import redis.cluster
import trio
from redis.exceptions import ClusterError, NoScriptError, RedisClusterException

from tickerd import topology
from tickerd.layout import Command
from tickerd.monotonic import Script
from tickerd.writer.connection import CONNECT_TIMEOUT, REPLY_TIMEOUT


class ClusterConnection:
    """The batches of one writer to the cluster of a ``redis+cluster://`` URL."""

    def __init__(
        self, url: str, *, reply_timeout: float = REPLY_TIMEOUT, scripts: Sequence[Script] = ()
    ) -> None:
        self._url = url
        self._scripts = tuple(scripts)
        #: The scripts are to be loaded before the next batch (at first, and after ``NOSCRIPT``).
        self._reload = bool(scripts)
        self._reply_timeout = reply_timeout
        self._client: redis.cluster.RedisCluster | None = None
        #: The round trip in its thread, set once it ended (an abandoned one, cancelled at
        #: shutdown, is waited for before the next: batches land in the order they were sent).
        self._running: trio.Event | None = None
        self._result: outcome.Outcome[list[Any]] | None = None
        self._failed = False
        #: Round trips that succeeded after a failed one: the cluster may have lost what a
        #: failed master held, so the monitor writes its records again.
        self.reconnects = 0

    async def send(self, commands: Sequence[Command]) -> None:
        """Start the pipeline of ``commands`` in a worker thread (after the previous one ended)."""
        if self._running is not None:
            await self._running.wait()
        done = self._running = trio.Event()
        self._result = None
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[list[Any]]) -> None:
            self._result = result
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        trio.lowlevel.start_thread_soon(partial(self._execute, list(commands)), deliver)

    async def replies(self) -> list[Any]:
        """Wait for the pipeline and return its replies; raise its first error (a
        ``redis.RedisError``) once every command ran."""
        if self._running is None:
            return []
        await self._running.wait()
        self._running = None
        result, self._result = self._result, None
        assert result is not None
        try:
            replies = result.unwrap()
        except redis.RedisError as exc:
            self._failed = True
            if isinstance(exc, NoScriptError):
                self._reload = True
            raise
        if self._failed:
            self._failed = False
            self.reconnects += 1
        return replies

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """One round trip: send ``commands`` and wait for their replies."""
        await self.send(commands)
        return await self.replies()

    def close(self) -> None:
        """Close the cluster's connections (after a round trip still running in its thread
        ends, redis-py opens them again if it is used again)."""
        if self._client is not None and self._running is None:
            self._client.close()
            self._client = None

    def _execute(self, commands: list[Command]) -> list[Any]:
        """The pipeline (in the worker thread); every failure as a ``redis.RedisError``."""
        try:
            client = self._client
            if client is None:
                client = self._client = self._connect()
            if self._reload:
                for script in self._scripts:
                    client.script_load(script.source)  # on every master
                self._reload = False
            pipeline = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
            for command in _per_slot(commands):
                pipeline.execute_command(*command)
            replies: list[Any] = pipeline.execute(raise_on_error=False)
        except RedisClusterException as exc:  # no node answers: redis-py's own is no RedisError
            raise ClusterError(str(exc)) from None
        for reply in replies:
            if isinstance(reply, redis.RedisError):
                raise reply
        return replies

    def _connect(self) -> redis.cluster.RedisCluster:
        client = topology.client(
            self._url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=self._reply_timeout
        )
        assert isinstance(client, redis.cluster.RedisCluster)
        return client


def _per_slot(commands: Sequence[Command]) -> Iterator[Command]:
    """``commands`` with the multi-key ones split per key (their keys are in several slots)."""
    for command in commands:
        name = command[0]
        if name == "MSET" and len(command) > 3:
            for at in range(1, len(command), 2):
                yield ("SET", command[at], command[at + 1])
        elif name == "DEL" and len(command) > 2:
            for key in command[1:]:
                yield ("DEL", key)
        else:
            yield command
