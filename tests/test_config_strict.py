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


def problems(stderr: str) -> list[str]:
    """The problems one configuration error lists (one, or ``N problems:`` and N lines)."""
    assert stderr.startswith(PREFIX), stderr
    first, *rest = stderr.removeprefix(PREFIX).splitlines()
    if not rest:
        return [first]
    assert first == f"{len(rest)} problems:"
    return [line.removeprefix("  ") for line in rest]


def test_values_of_the_wrong_kind_are_refused_not_coerced(tmp_path: Path) -> None:
    stderr = run_toml(
        tmp_path,
        "shutdown_grace = -inf\n"
        "[redis]\nprefix = 5\n"
        "[feed]\nmax_retries = 1.5\nsilence_timeout = true\nmax_lifetime = inf\n"
        "[health]\nstale_after = nan\n"
        '[exchanges.kraken]\nsymbols = ["BTC/USD"]\nenabled = "no"\n',
    )
    assert sorted(problems(stderr)) == [
        "exchanges.kraken.enabled: expected true or false, got 'no'",
        "feed.max_lifetime: expected a finite number, got inf",
        "feed.max_retries: expected a whole number, got 1.5",  # was: silently 1
        "feed.silence_timeout: expected a number, got True",  # was: 1.0
        "health.stale_after: expected a finite number, got nan",  # was: a traceback later
        "redis.prefix: expected a string, got 5",  # was: "5"
        "shutdown_grace: expected a finite number, got -inf",
    ]


def test_every_rule_is_checked_and_every_problem_listed(tmp_path: Path) -> None:
    stderr = run_toml(
        tmp_path,
        '[redis]\nurl = "redis://127.0.0.1:99999/0"\n'
        "[feed]\nreconnect_delay = 10.0\nmax_reconnect_delay = 5.0\nsilence_timeout = 0.5\n"
        "[health]\ninterval = 0.0001\n"
        f'[exchanges.kraken]\nurl = "http://x"\nsymbols = ["btcusd", "{"A" * 61}/USD"]\n'
        '[exchanges.okx]\nurl = "ws://127.0.0.1:0/ws"\n',
    )
    assert sorted(problems(stderr)) == [
        "exchanges.kraken.symbols: 'AAAAAAAAAAAAAAAA'…: 65 characters, at most 64",
        "exchanges.kraken.symbols: 'btcusd' is not a unified symbol "
        "(expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)",
        # was: retried forever
        "exchanges.kraken.url: expected ws://HOST[:PORT]/PATH or wss://…, got 'http://x'",
        "exchanges.okx.url: expected ws://HOST[:PORT]/PATH or wss://…, got 'ws://127.0.0.1:0/ws'",
        "feed.max_reconnect_delay: expected at least reconnect_delay (10), got 5.0",
        "feed.silence_timeout: expected a positive number of seconds, at least 1, got 0.5",
        "health.interval: expected a positive number of seconds, at least 1, got 0.0001",  # was: 81 % CPU
        "redis.url: expected redis://HOST:PORT/DB (port 1-65535), rediss://…, unix://…, "
        "redis+cluster://HOST:PORT[,HOST:PORT…] or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB], "
        "got 'redis://127.0.0.1:99999/0'",
    ]


def test_symbols_per_connection_is_a_whole_number_within_the_exchange_limit(tmp_path: Path) -> None:
    kind = run_toml(tmp_path, '[exchanges.okx]\nsymbols = ["BTC/USDT"]\nsymbols_per_connection = 1.5\n')
    assert problems(kind) == ["exchanges.okx.symbols_per_connection: expected a whole number, got 1.5"]
    ranges = run_toml(
        tmp_path,
        '[exchanges.kraken]\nsymbols = ["BTC/USD"]\nsymbols_per_connection = 0\n'
        '[exchanges.binance]\nsymbols = ["BTC/USDT"]\nsymbols_per_connection = 201\n',
    )
    assert sorted(problems(ranges)) == [
        "exchanges.binance.symbols_per_connection: expected at most 200 (binance's limit of symbols "
        "a connection), got 201",  # not silently capped: the person asked for something else
        "exchanges.kraken.symbols_per_connection: expected a whole number of at least 1, got 0",
    ]


def test_every_unknown_key_is_listed(tmp_path: Path) -> None:
    stderr = run_toml(tmp_path, "color = 1\n[feed]\nbogus = 1\nretries = 2\n[health]\nintervall = 5\n")
    assert problems(stderr) == [
        "feed: unknown key(s) bogus, retries",
        "health: unknown key(s) intervall",
        "unknown key(s) color",
    ]


def test_a_problem_from_the_environment_names_the_variable() -> None:
    ranges = run_cli(env={"TICKER_SILENCE_TIMEOUT": "-1", "REDIS_PORT": "99999", "TICKER_MAX_RETRIES": "1.5"})
    assert ranges.returncode == 2
    assert problems(ranges.stderr) == [
        "TICKER_MAX_RETRIES: expected a whole number, got '1.5'",
        "REDIS_PORT (redis.url): expected redis://HOST:PORT/DB (port 1-65535), rediss://…, unix://…, "
        "redis+cluster://HOST:PORT[,HOST:PORT…] or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB], "
        "got 'redis://127.0.0.1:99999/0'",
        # was: blamed on feed.silence_timeout, which the person never wrote
        "TICKER_SILENCE_TIMEOUT (feed.silence_timeout): expected a positive number of seconds, at least 1, "
        "got -1.0",
    ]
    kinds = run_cli(env={"TICKER_MAX_RETRIES": "many", "REDIS_PORT": "x", "TICKER_STALE_AFTER": "nan"})
    assert kinds.returncode == 2
    assert problems(kinds.stderr) == [
        "REDIS_PORT: expected a whole number, got 'x'",
        "TICKER_MAX_RETRIES: expected a whole number, got 'many'",
        "TICKER_STALE_AFTER (health.stale_after): expected a finite number, got nan",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("--metrics-port", "99999"),  # was: served on 34463
        ("run", "--metrics-port", "99999"),
        ("--metrics-port", "0"),
        ("run", "--metrics-port", "http"),
    ],
)
def test_the_metrics_port_is_1_to_65535(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"argument --metrics-port: expected a port number 1-65535, got '{args[-1]}'" in result.stderr


@pytest.mark.parametrize(
    "args", [("watch", "--duration", "nan"), ("watch", "--duration", "-5"), ("demo", "--duration", "inf")]
)
def test_a_duration_is_a_finite_number_of_seconds(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert f"--duration: expected a number of seconds (0 or more), got '{args[-1]}'" in result.stderr


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
