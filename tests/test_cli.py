"""``python -m tickerd`` as a person runs it: config errors, signals, exit statuses."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trio

from tests.conftest import Updates, cli_config, read_until, run_cli, start_fake
from tests.processes import RedisServer, daemon_process
from tickerd.commands.main import COMMANDS, build_parser, main
from tickerd.testing import FakeKraken


def test_invalid_value_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[feed]\nreconnect_delay = "soon"\n')
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert "configuration error: feed.reconnect_delay: expected a number" in result.stderr


def test_invalid_symbol_and_unknown_exchange_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[exchanges.kraken]\nsymbols = ["BTCUSD"]\n')
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert "exchanges.kraken.symbols: 'BTCUSD' is not a unified symbol" in result.stderr
    config.write_text('[exchanges.krakken]\nsymbols = ["BTC/USD"]\n')
    result = run_cli("--config", str(config))
    assert result.returncode == 2 and "unknown exchange 'krakken'" in result.stderr


def test_bad_environment_value_exits_2() -> None:
    result = run_cli(env={"TICKER_MAX_RETRIES": "many"})
    assert result.returncode == 2
    assert "TICKER_MAX_RETRIES: expected a whole number, got 'many'" in result.stderr
    result = run_cli(env={"LOG_FORMAT": "xml"})
    assert result.returncode == 2 and "LOG_FORMAT (log.format): expected one of text, json" in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read it" in result.stderr


async def test_invalid_config_opens_no_connection(nursery: trio.Nursery, tmp_path: Path) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[exchanges.kraken]\nurl = "{kraken.url}"\nsymbols = ["BTC/USD"]\n[feed]\nengine = "nope"\n'
    )
    result = await trio.to_thread.run_sync(lambda: run_cli("--config", str(config)))
    assert result.returncode == 2 and "feed.engine: expected one of" in result.stderr
    assert kraken.attempt_times == []


async def test_sigint_shuts_down_cleanly_with_exit_0(
    nursery: trio.Nursery, tmp_path: Path, prefix: str, updates: Updates
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    path = cli_config(tmp_path, kraken.url, prefix)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tickerd", "--config", str(path)], stderr=subprocess.PIPE
    )
    try:
        with trio.fail_after(20):
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
            await kraken.push("BTC/USD", last=123.0)
            await updates.wait_for(lambda r: r["last"] == 123.0)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    finally:
        process.kill()
    assert process.stderr is not None
    log = bytearray()
    with trio.fail_after(5):
        await read_until(process.stderr, b"tickerd stopped", log)
    assert b"SIGINT: shutting down" in log


async def test_a_second_signal_exits_at_once(
    nursery: trio.Nursery, tmp_path: Path, prefix: str, redis_server: RedisServer
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    path = cli_config(tmp_path, kraken.url, prefix, redis_url=redis_server.url, grace=60.0)
    async with daemon_process(["--config", str(path)]) as daemon:
        with trio.fail_after(20):
            await kraken.wait_until(lambda: kraken.is_subscribed("BTC/USD"))
        # Redis goes away with a ticker held, so the shutdown flush would wait out its 60 s grace.
        redis_server.kill()
        await kraken.push("BTC/USD", last=1.0)
        await daemon.wait_log("Redis unreachable")
        daemon.signal(signal.SIGTERM)
        await daemon.wait_log("SIGTERM: shutting down")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(within=5) == 1  # far less than the grace period


def test_config_option_works_after_the_run_command(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[feed]\nmax_retries = -1\n")
    for args in (("--config", str(config), "run"), ("run", "--config", str(config))):
        result = run_cli(*args)
        assert result.returncode == 2 and "feed.max_retries: expected 0" in result.stderr


#: What ``status`` and ``watch`` start without: they only read Redis, so they must not pay for
#: the daemon (and the exchanges, transports and sources it loads), Prometheus, the HTTP server
#: (hypercorn, and the status page) or psycopg.
HEAVY = ("tickerd.daemon", "prometheus_client", "hypercorn", "tickerd.web", "tickerd.page", "psycopg")

#: ``python -m tickerd ARGS`` in a fresh interpreter, then the names of the modules it loaded.
_LOADED_BY = """\
import runpy, sys
sys.argv[0] = "tickerd"
try:
    runpy.run_module("tickerd", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("loaded:", *sorted(sys.modules))
"""


@pytest.mark.parametrize(
    ("args", "output"),
    [
        (("status",), "tickerd is not running"),
        (("status", "--help"), "usage: tickerd status"),
        (("watch", "--duration", "0.1"), "no tickers"),
        (("--version",), "trio-websocket "),
    ],
)
def test_status_watch_and_version_start_without_the_daemon_prometheus_or_psycopg(
    args: tuple[str, ...], output: str, prefix: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_BY, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "REDIS_PREFIX": prefix},
    )
    report, _, modules = result.stdout.rpartition("loaded:")
    assert output in report + result.stderr  # the command ran
    heavy = [name for name in modules.split() if any(name == h or name.startswith(f"{h}.") for h in HEAVY)]
    assert heavy == []


#: What ``tickerd run`` (and ``tickerd`` without a command) starts without unless
#: ``--metrics-port`` asks for the HTTP port: hypercorn, Prometheus, the status page; and the
#: other commands' psycopg.
HTTP_STACK = (
    "hypercorn",
    "h2",
    "prometheus_client",
    "tickerd.web",
    "tickerd.metrics",
    "tickerd.page",
    "psycopg",
)


@pytest.mark.parametrize("args", [("run",), ()], ids=["run", "no command"])
def test_the_daemon_starts_without_the_http_port_or_the_other_commands(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.toml"  # the command stops at its configuration: imports are all done
    result = subprocess.run(
        [sys.executable, "-c", _LOADED_BY, *args, "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    report, _, modules = result.stdout.rpartition("loaded:")
    assert f"--config {missing}: cannot read it" in report + result.stderr  # run's own check ran
    assert "tickerd.commands.run" in modules.split()
    heavy = [
        name for name in modules.split() if any(name == h or name.startswith(f"{h}.") for h in HTTP_STACK)
    ]
    assert heavy == []


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_is_served_by_the_module_listed_for_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``tickerd COMMAND`` loads only :data:`COMMANDS`' module for it: that module must register it."""
    with pytest.raises(SystemExit) as raised:
        build_parser([command]).parse_args([command, "--help"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: tickerd {command} ")


def test_the_console_script_runs_the_command_line() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    module, _, name = pyproject["project"]["scripts"]["tickerd"].partition(":")
    assert getattr(importlib.import_module(module), name) is main
