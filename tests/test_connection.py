"""The writer's own Redis connection: RESP over trio against real servers (TCP, TLS, Unix
socket, password), the errors it raises, and its wall-clock timeouts."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio
import trio.testing

from tests.conftest import REDIS_URL
from tests.processes import RedisServer, tls_files
from tickerd.redis_errors import refusal
from tickerd.writer.connection import RedisConnection


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer(password="s3cret")
    server.start()
    yield server
    server.kill()


async def test_error_replies_are_raised_after_every_reply_is_read(prefix: str) -> None:
    connection = RedisConnection(REDIS_URL)
    key = f"{prefix}k"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await connection.execute([("SET", key, "1"), ("HSET", key, "f", "v"), ("SET", key, "2")])
    await connection.execute([("GET", key)])  # still in step: the error did not cost the connection
    assert connection.reconnects == 0
    client = redis.Redis.from_url(REDIS_URL)
    assert client.get(key) == b"2"  # the command after the error ran too
    client.close()
    connection.close()


async def test_password_and_database_come_from_the_url(server: RedisServer) -> None:
    connection = RedisConnection(server.url.replace("/0", "/3"))
    await connection.execute([("SET", "k", "v")])
    admin = redis.Redis(port=server.port, password="s3cret", db=3)
    assert admin.get("k") == b"v"
    admin.close()
    connection.close()


async def test_a_wrong_password_is_a_refusal_and_the_next_attempt_starts_over(server: RedisServer) -> None:
    connection = RedisConnection(f"redis://:wrong@127.0.0.1:{server.port}/0")
    with pytest.raises(redis.AuthenticationError) as caught:
        await connection.execute([("SET", "k", "v")])
    assert refusal(caught.value) == f"authentication failed ({caught.value})"
    admin = redis.Redis(port=server.port, password="s3cret")
    admin.config_set("requirepass", "wrong")  # put right on the server's side
    await connection.execute([("SET", "k", "v")])  # a new connection, authenticated this time
    assert admin.get("k") == b"v"
    admin.close()
    connection.close()


async def test_a_restarted_server_is_reconnected_and_counted(server: RedisServer) -> None:
    connection = RedisConnection(server.url)
    await connection.execute([("SET", "k", "1")])
    server.restart()
    with pytest.raises(redis.ConnectionError):  # the old socket is dead: this attempt fails
        await connection.execute([("SET", "k", "2")])
    await connection.execute([("SET", "k", "2")])
    assert connection.reconnects == 1
    connection.close()


async def test_a_server_that_never_answers_times_out_in_wall_clock_time(server: RedisServer) -> None:
    connection = RedisConnection(server.url, reply_timeout=0.5)
    await connection.execute([("SET", "k", "1")])
    server.pause()
    try:
        with trio.fail_after(5), pytest.raises(redis.TimeoutError):
            await connection.execute([("SET", "k", "2")])
    finally:
        server.resume()
    await connection.execute([("SET", "k", "3")])  # a new connection once it answers again
    connection.close()


async def test_a_virtual_clock_jumping_ahead_times_nothing_out(
    clock: trio.testing.MockClock, server: RedisServer
) -> None:
    """Under an autojumping clock, trio's time races ahead whenever the loop waits for Redis;
    the reply timeout is wall-clock time, so a slow round trip still completes."""
    connection = RedisConnection(server.url, reply_timeout=5.0)
    await connection.execute([("PING",)])

    async def resume_after_a_moment() -> None:
        await trio.to_thread.run_sync(time.sleep, 0.3)  # real time: trio's sleeps are virtual here
        server.resume()

    started = trio.current_time()
    server.pause()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(resume_after_a_moment)
        await connection.execute([("SET", "k", "1")])
    assert trio.current_time() - started > 5.0  # the virtual clock ran past the timeout meanwhile
    assert connection.reconnects == 0  # and the round trip completed on its first connection
    connection.close()


async def test_tls_and_unix_socket_urls(tmp_path: Path) -> None:
    server = RedisServer(tls=tls_files(tmp_path), unix_socket=tmp_path / "redis.sock")
    server.start()
    try:
        tls = RedisConnection(f"{server.url}?ssl_ca_certs={tmp_path / 'ca.pem'}")
        await tls.execute([("SET", "over", "tls")])
        unix = RedisConnection(f"unix://{tmp_path / 'redis.sock'}?db=0")
        await unix.execute([("SET", "over", "unix")])
        untrusted = RedisConnection(server.url)  # the system store does not know this CA
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.execute([("PING",)])
        for connection in (tls, unix, untrusted):
            connection.close()
    finally:
        server.kill()


async def test_something_that_is_not_redis_is_named_so(nursery: trio.Nursery) -> None:
    async def http(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    listeners = await nursery.start(functools.partial(trio.serve_tcp, http, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    connection = RedisConnection(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(redis.RedisError) as caught:
        await connection.execute([("PING",)])
    assert (refusal(caught.value) or "").startswith("not a Redis server")
    connection.close()
