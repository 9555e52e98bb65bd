"""Configuration that cannot surprise, through the real command line: every rule refuses what
used to pass (or was silently changed), with exit 2 and every problem listed in one run."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tickerd.commands.main import ENGINES
from tickerd.version import __version__

PREFIX = "tickerd: configuration error: "


def run_toml(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``tickerd --config FILE ARGS`` with ``text`` as the file; its error output (exit 2)."""
    path = tmp_path / "tickerd.toml"
    path.write_text(text)
    result = run_cli("--config", str(path), *args, env=env)
    assert result.returncode == 2, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[health]\nstale_after = nan\n", "health.stale_after: expected a finite number, got nan"),
        ("[feed]\nmax_lifetime = inf\n", "feed.max_lifetime: expected a finite number, got inf"),
        ("shutdown_grace = -inf\n", "shutdown_grace: expected a finite number, got -inf"),
        ("[feed]\nmax_retries = 1.5\n", "feed.max_retries: expected a whole number, got 1.5"),
        ("[feed]\nsilence_timeout = true\n", "feed.silence_timeout: expected a number, got True"),
        ("[redis]\nprefix = 5\n", "redis.prefix: expected a string, got 5"),
        (
            '[exchanges.kraken]\nsymbols = ["BTC/USD"]\nenabled = "no"\n',
            "exchanges.kraken.enabled: expected true or false, got 'no'",
        ),
        (
            '[exchanges.kraken]\nurl = "http://x"\nsymbols = ["BTC/USD"]\n',
            "exchanges.kraken.url: expected ws://HOST[:PORT]/PATH or wss://…, got 'http://x'",
        ),
        (
            '[exchanges.kraken]\nurl = "ws://127.0.0.1:0/ws"\nsymbols = ["BTC/USD"]\n',
            "exchanges.kraken.url: expected ws://HOST[:PORT]/PATH or wss://…, got 'ws://127.0.0.1:0/ws'",
        ),
        (
            "[feed]\nreconnect_delay = 10.0\nmax_reconnect_delay = 5.0\n",
            "feed.max_reconnect_delay: expected at least reconnect_delay (10), got 5.0",
        ),
        (
            "[health]\ninterval = 0.0001\n",
            "health.interval: expected a positive number of seconds, at least 1, got 0.0001",
        ),
        (
            "[feed]\nsilence_timeout = 0.5\n",
            "feed.silence_timeout: expected a positive number of seconds, at least 1, got 0.5",
        ),
        (
            '[redis]\nurl = "redis://127.0.0.1:99999/0"\n',
            "redis.url: expected redis://HOST:PORT/DB (port 1-65535)",
        ),
        (
            f'[exchanges.kraken]\nsymbols = ["{"A" * 61}/USD"]\n',
            "exchanges.kraken.symbols: 'AAAAAAAAAAAAAAAA'…: 65 characters, at most 64",
        ),
    ],
)
def test_each_rule_exits_2_naming_the_key(tmp_path: Path, toml: str, problem: str) -> None:
    assert run_toml(tmp_path, toml).startswith(f"{PREFIX}{problem}")


def test_every_problem_is_listed_in_one_run(tmp_path: Path) -> None:
    unknown = run_toml(tmp_path, "color = 1\n[feed]\nbogus = 1\nretries = 2\n[health]\nintervall = 5\n")
    assert unknown == (
        f"{PREFIX}3 problems:\n"
        "  feed: unknown key(s) bogus, retries\n"
        "  health: unknown key(s) intervall\n"
        "  unknown key(s) color\n"
    )
    # Types are checked first (a value of the wrong kind cannot be range-checked), then every rule.
    rules = run_toml(
        tmp_path,
        "[health]\ninterval = 0.0001\nstale_after = 0\n"
        '[exchanges.kraken]\nurl = "http://x"\nsymbols = ["btcusd", "BTC/USD"]\n',
    )
    assert rules.startswith(f"{PREFIX}4 problems:\n")
    for problem in ("health.interval: ", "health.stale_after: ", "exchanges.kraken.url: ", "'btcusd'"):
        assert problem in rules
    variables = run_cli(env={"TICKER_MAX_RETRIES": "many", "REDIS_PORT": "x", "TICKER_STALE_AFTER": "nan"})
    assert variables.returncode == 2
    assert variables.stderr == (
        f"{PREFIX}3 problems:\n"
        "  REDIS_PORT: expected a whole number, got 'x'\n"
        "  TICKER_MAX_RETRIES: expected a whole number, got 'many'\n"
        "  TICKER_STALE_AFTER (health.stale_after): expected a finite number, got nan\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        (
            "TICKER_SILENCE_TIMEOUT",
            "-1",
            "TICKER_SILENCE_TIMEOUT (feed.silence_timeout): expected a positive number of seconds, "
            "at least 1, got -1.0",
        ),
        (
            "TICKER_STALE_AFTER",
            "nan",
            "TICKER_STALE_AFTER (health.stale_after): expected a finite number, got nan",
        ),
        ("TICKER_MAX_RETRIES", "1.5", "TICKER_MAX_RETRIES: expected a whole number, got '1.5'"),
        ("REDIS_PORT", "99999", "REDIS_PORT (redis.url): expected redis://HOST:PORT/DB (port 1-65535)"),
    ],
)
def test_a_bad_environment_variable_is_named(variable: str, value: str, problem: str) -> None:
    result = run_cli(env={variable: value})
    assert result.returncode == 2 and result.stderr.startswith(f"{PREFIX}{problem}")


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_the_metrics_port_is_1_to_65535(port: str) -> None:
    for args in (("--metrics-port", port), ("run", "--metrics-port", port)):
        result = run_cli(*args)
        assert result.returncode == 2
        assert f"argument --metrics-port: expected a port number 1-65535, got '{port}'" in result.stderr


@pytest.mark.parametrize("command", ["watch", "demo"])
def test_a_duration_is_a_finite_number_of_seconds(command: str) -> None:
    for duration in ("nan", "-5", "inf"):
        result = run_cli(command, "--duration", duration)
        assert result.returncode == 2
        assert f"--duration: expected a number of seconds (0 or more), got '{duration}'" in result.stderr


def test_symbols_add_refuses_a_symbol_longer_than_64_characters() -> None:
    symbol = "B" * 60 + "/USDT"
    result = run_cli(
        "symbols", "add", "binance", symbol, env={"DATABASE_URL": "postgresql://127.0.0.1:1/none"}
    )
    assert result.returncode == 2
    assert result.stderr == "tickerd: binance: 'BBBBBBBBBBBBBBBB'…: 65 characters, at most 64\n"


def test_version_names_tickerd_python_and_the_engine_libraries() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    version, python, engines = result.stdout.splitlines()
    assert version == f"tickerd {__version__}"
    assert python == f"Python {platform.python_implementation()} {platform.python_version()}"
    assert engines == ", ".join(f"{name} {metadata.version(dist)}" for name, dist in ENGINES.items())
