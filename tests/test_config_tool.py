"""``tickerd config sample`` and ``tickerd config check``: a sample that cannot drift from the
configuration classes, and a check that lists every problem without connecting anywhere."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.conftest import REDIS_URL
from tickerd import exchanges
from tickerd.commands.config import summary
from tickerd.config import (
    EXAMPLE,
    HELP,
    Config,
    ConfigError,
    ExchangeConfig,
    environment_variables,
    load,
    structure,
)
from tickerd.sample import COMMAND, sample

EXAMPLE_FILE = Path(__file__).parents[1] / "examples" / "tickerd.toml"
PREFIX = "tickerd: configuration error: "

#: A line of the sample that sets a key, or shows it commented out: ``# url = "redis://…"``.
_KEY_LINE = re.compile(r"^(?P<unset># )?(?P<name>[a-z_]+) = (?P<value>.+)$")


def config_classes(cls: type = Config) -> Iterator[type]:
    """``cls`` and every configuration class it holds, however deep (sections, tables of them)."""
    yield cls
    for field in attrs.fields(attrs.resolve_types(cls)):
        for held in (field.type, *typing.get_args(field.type)):
            if isinstance(held, type) and attrs.has(held):
                yield from config_classes(held)


def sample_keys(text: str) -> dict[str, dict[str, bool]]:
    """The keys of each table of a sample: table name → key → whether it is set (not commented)."""
    tables: dict[str, dict[str, bool]] = {"": {}}
    current = tables[""]
    for line in text.splitlines():
        if line.startswith("["):
            current = tables.setdefault(line.strip("[]"), {})
        elif match := _KEY_LINE.match(line):
            current[match["name"]] = not match["unset"]
    return tables


def test_every_setting_has_a_meaning_and_unset_ones_an_example() -> None:
    classes = list(config_classes())
    assert {cls.__name__ for cls in classes} >= {"Config", "RedisSettings", "FeedSettings", "ExchangeConfig"}
    for cls in classes:
        for field in attrs.fields(cls):
            where = f"{cls.__name__}.{field.name}"
            assert field.metadata.get(HELP, "").strip(), f"{where}: no metadata help (config._help)"
            if field.default is None:
                assert EXAMPLE in field.metadata, f"{where}: unset by default, but no example to show"


def test_every_setting_of_every_class_is_in_its_table_of_the_sample() -> None:
    """Each class's table: Config's top level, each section's ``[name]``, and the first
    ``[exchanges.NAME]`` for the exchange settings; a field unset by default is commented out."""
    tables = sample_keys(sample())
    config = Config()
    where: dict[type, str] = {Config: ""}
    for field in attrs.fields(Config):
        value = getattr(config, field.name)
        if attrs.has(type(value)):
            where[type(value)] = field.name
    where[ExchangeConfig] = next(name for name in tables if name.startswith("exchanges."))
    assert set(where) == set(config_classes()), "a configuration class the sample does not place"
    for cls, table in where.items():
        for field in attrs.fields(cls):
            if cls is Config and (field.name == "exchanges" or attrs.has(type(field.default))):
                continue  # a table of its own, checked as such
            assert field.name in tables[table], f"[{table}] lacks {field.name}"
            assert tables[table][field.name] is (field.default is not None), f"[{table}] {field.name}"


def test_the_sample_loads_back_to_the_defaults() -> None:
    """Every value shown is the default (the exchanges: the built-in set tickerd runs without a
    configuration), written so that TOML reads it back exactly."""
    loaded = structure(tomllib.loads(sample()))
    assert loaded == load(None, environ={})
    assert attrs.evolve(loaded, exchanges={}) == Config()


def test_every_example_is_a_valid_value() -> None:
    """Uncommenting any line of the sample (here: all of them) gives a valid configuration."""
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", sample(), flags=re.MULTILINE)
    loaded = structure(tomllib.loads(uncommented))
    assert loaded.redis.url is not None and loaded.feed.max_lifetime is not None
    assert loaded.database.url is not None and loaded.exchanges["kraken"].url is not None


def test_the_shipped_example_is_the_generated_sample() -> None:
    assert EXAMPLE_FILE.read_text() == sample(), f"examples/tickerd.toml is out of date: run `{COMMAND}`"


def test_help_names_the_environment_variables_that_override_a_key() -> None:
    text = sample()
    assert "Environment: TICKER_SILENCE_TIMEOUT." in text.replace("\n# ", " ")
    assert environment_variables("redis.url") == ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB")
    assert set(environment_variables()) >= {"REDIS_URL", "REDIS_HOST", "ADMIN_MAIL", "TICKER_ENGINE"}


#: ``python -m tickerd ARGS`` with every socket operation (name lookups included) and every new
#: process recorded by an audit hook; the exit status is kept.  Sockets opened in C (libpq's)
#: escape the hook: a listener that nothing may reach catches those.
_AUDITED = """\
import runpy, sys
seen = []
def audit(event, args):
    if event.startswith("socket.") or event in ("os.posix_spawn", "os.fork", "os.exec"):
        seen.append(event)
    elif event == "subprocess.Popen" and not str(args[0]).endswith("/ldconfig"):  # trio's import
        seen.append(f"{event} {args[0]}")
sys.addaudithook(audit)
sys.argv[0] = "tickerd"
try:
    runpy.run_module("tickerd", run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as exit:
    status = exit.code
print("audited:", *sorted(set(seen)))
sys.exit(status)
"""


def tickerd(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """``tickerd ARGS`` audited, with no configuration variable inherited from the test's own
    environment: exit status, output (without the audit line), errors, the events seen."""
    clean = {name: value for name, value in os.environ.items() if name not in environment_variables()}
    result = subprocess.run(
        [sys.executable, "-c", _AUDITED, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
    )
    output, _, audited = result.stdout.rpartition("audited:")
    return result.returncode, output, result.stderr, audited.split()


def test_sample_then_check_exits_0_with_one_line(tmp_path: Path) -> None:
    status, text, errors, _ = tickerd("config", "sample")
    assert status == 0 and errors == "" and text == sample()
    path = tmp_path / "t.toml"
    path.write_text(text)
    status, output, errors, events = tickerd("config", "check", str(path))
    assert (status, errors, events) == (0, "", [])
    assert output == (
        f"{path}: configuration OK (2 exchanges, 6 symbols → Redis {REDIS_URL} (the default))\n"
    )


#: Secrets of the files below, none of which may be printed.
SECRETS = ("hunter2", "s3cret", "tok3n", "pgpass")


def test_check_connects_nowhere_and_prints_no_secret(tmp_path: Path, prefix: str) -> None:
    """``check`` opens no socket, looks no name up and starts no redis-server: the Redis is a
    name that would need a lookup, PostgreSQL and the exchange a listening port that nothing may
    reach.  ``status`` with the same file does connect: the audit sees connections."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        path = tmp_path / "t.toml"
        path.write_text(
            f'[redis]\nurl = "redis://:hunter2@redis.invalid:6379/0"\nprefix = "{prefix}"\n'
            f'[database]\nurl = "postgresql://tickerd:pgpass@127.0.0.1:{port}/markets"\n'
            f'[exchanges.kraken]\nurl = "wss://127.0.0.1:{port}/ws?token=tok3n"\nsymbols = ["BTC/USD"]\n'
        )
        status, output, errors, events = tickerd("config", "check", str(path))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
    assert (status, errors, events) == (0, "", [])
    assert output == (
        f"{path}: configuration OK (subscriptions from PostgreSQL "
        f"postgresql://tickerd:***@127.0.0.1:{port}/markets → Redis redis://:***@redis.invalid:6379/0, "
        f"prefix '{prefix}')\n"
    )
    status, _, _, events = tickerd("status", "--config", str(path), env={"REDIS_URL": REDIS_URL})
    assert "socket.connect" in events


def test_a_broken_file_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    """Values of the wrong kind, unknown keys and broken rules, all in one run (the wrong
    values are left out so that the rules are checked on the rest), passwords masked."""
    path = tmp_path / "t.toml"
    path.write_text(
        "shutdown_grace = 0.01\n"
        "[bogus]\n"
        '[redis]\nurl = "redis://:hunter2@127.0.0.1:99999/0"\nprefix = 5\n'
        '[log]\nlevel = "LOUD"\n'
        "[feed]\nretries = 3\nsilence_timeout = 0.5\nreconnect_delay = 10.0\nmax_reconnect_delay = 5.0\n"
        "max_retries = 1.5\n"
        '[database]\nurl = "host=db password s3cret"\nmode = "other"\n'
        '[exchanges.nowhere]\nsymbols = ["BTC/USD"]\n'
        '[exchanges.kraken]\nsymbols = ["btcusd"]\nenabled = "no"\nurl = "http://relay/ws?token=tok3n"\n'
    )
    status, output, errors, events = tickerd("config", "check", str(path))
    assert (status, output, events) == (2, "", [])
    assert errors.startswith(f"{PREFIX}15 problems:\n")
    assert sorted(line.removeprefix("  ") for line in errors.splitlines()[1:]) == [
        "database.mode: expected one of tickerd, fullon, got 'other'",
        "database.url: expected postgresql://USER@HOST:PORT/DBNAME or 'host=… dbname=…', got an unreadable "
        'key=value string (missing "=" after "…" in connection info string)',
        "exchanges.kraken.enabled: expected true or false, got 'no'",
        "exchanges.kraken.symbols: 'btcusd' is not a unified symbol "
        "(expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)",
        "exchanges.kraken.url: expected ws://HOST[:PORT]/PATH or wss://…, got 'http://relay/ws?token=***'",
        "exchanges.nowhere: unknown exchange 'nowhere' (supported: " + ", ".join(exchanges.names()) + ")",
        "feed.max_reconnect_delay: expected at least reconnect_delay (10), got 5.0",
        "feed.max_retries: expected a whole number, got 1.5",
        "feed.silence_timeout: expected a positive number of seconds, at least 1, got 0.5",
        "feed: unknown key(s) retries",
        "log.level: expected one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "redis.prefix: expected a string, got 5",
        "redis.url: expected redis://HOST:PORT/DB (port 1-65535), rediss://…, unix://…, "
        "redis+cluster://HOST:PORT[,HOST:PORT…] or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB], "
        "got 'redis://:***@127.0.0.1:99999/0'",
        "shutdown_grace: expected a positive number of seconds, at least 0.1, got 0.01",
        "unknown key(s) bogus",
    ]
    assert not [secret for secret in SECRETS if secret in errors]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tickerd:hunter2 x@db/markets",  # libpq quotes the piece it cannot read
        "postgresql://tickerd:hunter2%ZZ@db/markets",
        "host=db password hunter2",
        "host=db password='hunter2",
    ],
)
def test_an_unreadable_database_url_shows_no_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        structure({"database": {"url": url}})
    assert "database.url: expected postgresql://" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_redis_url_with_a_blank_in_its_password_is_not_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        structure({"redis": {"url": "redis://:hunter2 x@127.0.0.1:99999/0"}})
    assert str(raised.value).endswith("got a URL with blanks in it")


def test_check_names_the_environment_behind_a_value(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(sample())
    status, _, errors, _ = tickerd("config", "check", str(path), env={"TICKER_SILENCE_TIMEOUT": "-1"})
    assert status == 2
    assert errors == (
        f"{PREFIX}TICKER_SILENCE_TIMEOUT (feed.silence_timeout): expected a positive number of seconds, "
        "at least 1, got -1.0\n"
    )
    status, output, _, _ = tickerd("config", "check", str(path), env={"REDIS_PREFIX": "blue:"})
    assert status == 0 and output.endswith(", prefix 'blue:'; from the environment: REDIS_PREFIX)\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("[redis\n", "not valid TOML"),
    ],
)
def test_an_unreadable_file_exits_2(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "t.toml"
    if text is not None:
        path.write_text(text)
    status, _, errors, _ = tickerd("config", "check", str(path))
    assert status == 2 and errors.startswith(PREFIX) and problem in errors


def test_wrong_values_are_left_out_so_the_rules_of_the_rest_are_checked() -> None:
    """A wrong table, a wrong list and an unknown key inside a table of tables: each reported,
    and the rest still judged (``stale_after`` and the unknown exchange)."""
    raw: dict[str, Any] = {
        "log": 5,
        "health": {"stale_after": 0.5},
        "exchanges": {"binance": {"symbols": "BTC/USDT", "colour": "red"}, "nowhere": {}},
    }
    with pytest.raises(ConfigError) as raised:
        structure(raw)
    assert sorted(raised.value.problems) == [
        "exchanges.binance.symbols: expected a list of strings",
        "exchanges.binance: unknown key(s) colour",
        "exchanges.nowhere: unknown exchange 'nowhere' (supported: " + ", ".join(exchanges.names()) + ")",
        "health.stale_after: expected a positive number of seconds, at least 1, got 0.5",
        "log: expected a table",
    ]
    assert raw["exchanges"]["binance"]["colour"] == "red"  # the caller's data is left as it was


def test_the_summary_counts_what_is_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment_variables():
        monkeypatch.delenv(name, raising=False)
    config = structure(
        {
            "redis": {"url": "rediss://:hunter2@cache.example:6380/2"},
            "exchanges": {
                "kraken": {"symbols": ["BTC/USD"]},
                "okx": {"symbols": ["BTC/USDT", "ETH/USDT"], "enabled": False},
            },
        }
    )
    assert (
        summary(config) == "1 exchange, 1 symbol (1 more disabled) → Redis rediss://:***@cache.example:6380/2"
    )
