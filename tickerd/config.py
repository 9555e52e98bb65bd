"""Configuration: a TOML file (or the built-in default) overridden by environment variables.

Everything is validated at the edge, before any connection is opened: an invalid value gives
one :class:`ConfigError` whose message names the key and the expected form.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import cattrs

from tickerd import exchanges
from tickerd.backoff import Backoff
from tickerd.layout import RedisLayout
from tickerd.redact import redact
from tickerd.transport import DEFAULT_ENGINE, engine_names

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """An invalid configuration; the message is meant for the person who wrote it."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name}: expected a positive number of seconds, got {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: expected 0 (retry forever) or more, got {value!r}")


def _redis_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{attribute.name}: expected redis://HOST:PORT/DB, rediss://… or unix://…, got {redact(value)!r}"
        )


def _one_of(name: str, value: str, options: tuple[str, ...] | list[str]) -> None:
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}, got {value!r}")


def _engine(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _one_of(attribute.name, value, engine_names())


#: The server used when no URL is configured (``tickerd run`` falls back to a private one).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@attrs.frozen
class RedisSettings:
    """Where tickers go; ``prefix`` namespaces every key (tests, several daemons on one server).

    ``url`` is ``None`` unless configured (TOML or ``REDIS_URL``/``REDIS_HOST``…), because an
    explicit server is waited for while the default one may be replaced by a private server
    (:mod:`tickerd.embedded`).
    """

    url: str | None = attrs.field(default=None, validator=_redis_url)
    prefix: str = ""
    #: Seconds the lease on ``prefix`` outlives its holder (:mod:`tickerd.lease`): a daemon
    #: killed with ``kill -9`` blocks a successor this long at most; renewed every third of it.
    lease_expiry: float = attrs.field(default=15.0, validator=_positive)

    @property
    def address(self) -> str:
        """The configured URL, else the default local server."""
        return self.url or DEFAULT_REDIS_URL

    @property
    def layout(self) -> RedisLayout:
        """The key names and record encoding under this ``prefix``."""
        return RedisLayout(self.prefix)


def _upper(value: object) -> str:
    return str(value).upper()


@attrs.frozen
class LogSettings:
    level: str = attrs.field(
        default="INFO",
        converter=_upper,
        validator=lambda _, a, v: _one_of(a.name, v, LOG_LEVELS),
    )
    format: str = attrs.field(default="text", validator=lambda _, a, v: _one_of(a.name, v, ("text", "json")))


@attrs.frozen
class FeedSettings:
    """Timing and engine of the shared I/O loop (every exchange uses the same loop)."""

    #: First reconnect delay; doubles per consecutive failure, with jitter, up to the cap.
    reconnect_delay: float = attrs.field(default=1.0, validator=_positive)
    max_reconnect_delay: float = attrs.field(default=60.0, validator=_positive)
    #: 0 retries forever; after N consecutive failures the connection is marked failed.
    max_retries: int = attrs.field(default=0, validator=_not_negative)
    #: No frame for this long means a dead connection: reconnect.
    silence_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: A connection that stayed up this long resets the backoff.
    healthy_after: float = attrs.field(default=30.0, validator=_positive)
    #: How long a new connection may take to confirm its subscriptions before it counts as up.
    ready_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Rotate every connection after this many seconds (make-before-break), or sooner where
    #: the exchange's own limit is shorter; unset: only at the exchange's own limit.
    max_lifetime: float | None = attrs.field(default=None, validator=attrs.validators.optional(_positive))
    #: The websocket engine (``websockets`` or ``trio-websocket``); exchanges may override it.
    engine: str = attrs.field(default=DEFAULT_ENGINE, validator=_engine)
    #: Extra CA bundle for ``wss://`` (a private relay); the system store otherwise.
    ca_file: str | None = None

    @property
    def backoff(self) -> Backoff:
        """The reconnect policy: ``reconnect_delay`` doubling up to ``max_reconnect_delay``."""
        return Backoff(self.reconnect_delay, self.max_reconnect_delay)


@attrs.frozen
class HealthSettings:
    """Health records in Redis and the staleness rule (see :mod:`tickerd.monitor`)."""

    #: Seconds between two steady-state health writes of one exchange; state changes are
    #: written at once.  Records expire after three intervals, so a dead daemon disappears.
    interval: float = attrs.field(default=30.0, validator=_positive)
    #: A subscribed symbol with no update for this long is stale.
    stale_after: float = attrs.field(default=60.0, validator=_positive)


def _database_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    from psycopg import ProgrammingError  # imported only when a database is configured
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        raise ValueError(
            f"{attribute.name}: expected postgresql://USER@HOST:PORT/DBNAME or 'host=… dbname=…', "
            f"got {redact(value)!r} ({str(exc).strip()})"
        ) from None


def _identifier(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,50}", value):
        raise ValueError(f"{attribute.name}: expected a lower-case SQL name such as tickerd, got {value!r}")


@attrs.frozen
class DatabaseSettings:
    """PostgreSQL as the source of subscriptions (instead of the TOML ``[exchanges]``)."""

    #: libpq URL or key=value string; unset means the TOML file lists the subscriptions.
    url: str | None = attrs.field(default=None, validator=_database_url)
    #: ``tickerd``: tickerd's own tables (``tickerd db init``), followed live through
    #: LISTEN/NOTIFY; ``fullon``: an existing fullon database, read as it is.
    mode: str = attrs.field(
        default="tickerd", validator=lambda _, a, v: _one_of(a.name, v, ("tickerd", "fullon"))
    )
    #: The PostgreSQL schema that holds tickerd's tables (``tickerd`` mode).
    schema: str = attrs.field(default="tickerd", validator=_identifier)
    #: Seconds between full re-reads (catches a lost notification; fullon mode's only way).
    refresh: float = attrs.field(default=60.0, validator=_positive)
    #: fullon mode: the user whose active exchanges are collected.
    admin_mail: str = "admin@fullon"


@attrs.frozen
class ExchangeConfig:
    symbols: tuple[str, ...] = ()
    url: str | None = None
    engine: str | None = None
    enabled: bool = True


@attrs.frozen
class Config:
    redis: RedisSettings = RedisSettings()
    log: LogSettings = LogSettings()
    feed: FeedSettings = FeedSettings()
    health: HealthSettings = HealthSettings()
    exchanges: dict[str, ExchangeConfig] = attrs.field(factory=dict)
    database: DatabaseSettings = DatabaseSettings()
    #: Seconds the writer may take to flush on shutdown.
    shutdown_grace: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        for name, exchange in self.exchanges.items():
            try:
                adapter = exchanges.get(name)
            except KeyError as exc:
                raise ConfigError(f"exchanges.{name}: {exc.args[0]}") from None
            for symbol in exchange.symbols:
                try:
                    adapter.check_symbol(symbol)
                except ValueError as exc:
                    raise ConfigError(f"exchanges.{name}.symbols: {exc}") from None
            if exchange.engine is not None:
                try:
                    _one_of("engine", exchange.engine, engine_names())
                except ValueError as exc:
                    raise ConfigError(f"exchanges.{name}.{exc}") from None


DEFAULT_TOML = """
[exchanges.kraken]
symbols = ["BTC/USD", "ETH/USD", "SOL/USD"]

[exchanges.binance]
symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
"""

#: Environment variable → (TOML path, parser description) overrides.
_ENV: dict[str, tuple[tuple[str, ...], type]] = {
    "REDIS_URL": (("redis", "url"), str),
    "REDIS_PREFIX": (("redis", "prefix"), str),
    "LOG_LEVEL": (("log", "level"), str),
    "LOG_FORMAT": (("log", "format"), str),
    "TICKER_RECONNECT_DELAY": (("feed", "reconnect_delay"), float),
    "TICKER_MAX_RETRIES": (("feed", "max_retries"), int),
    "TICKER_SILENCE_TIMEOUT": (("feed", "silence_timeout"), float),
    "TICKER_ENGINE": (("feed", "engine"), str),
    "TICKER_STALE_AFTER": (("health", "stale_after"), float),
    "DATABASE_URL": (("database", "url"), str),
    "DATABASE_MODE": (("database", "mode"), str),
    "DATABASE_REFRESH": (("database", "refresh"), float),
    "ADMIN_MAIL": (("database", "admin_mail"), str),
}

_converter = cattrs.Converter(forbid_extra_keys=True)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Overlay environment variables on the TOML data, parsing each with a clear message."""
    if "REDIS_URL" not in environ and any(k in environ for k in ("REDIS_HOST", "REDIS_PORT", "REDIS_DB")):
        host = environ.get("REDIS_HOST", "127.0.0.1")
        port, db = environ.get("REDIS_PORT", "6379"), environ.get("REDIS_DB", "0")
        for key, number in (("REDIS_PORT", port), ("REDIS_DB", db)):
            if not number.isdigit():
                raise ConfigError(f"{key}: expected a whole number, got {number!r}")
        raw.setdefault("redis", {})["url"] = f"redis://{host}:{port}/{db}"
    for key, (path, kind) in _ENV.items():
        if key not in environ:
            continue
        text = environ[key]
        try:
            value: Any = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{key}: expected {expected}, got {text!r}") from None
        section = raw
        for part in path[:-1]:
            section = section.setdefault(part, {})
        section[path[-1]] = value


_EXPECTED = {
    float: "a number",
    int: "a whole number",
    str: "a string",
    bool: "true or false",
    tuple[str, ...]: "a list of strings",
}


def _format(exc: BaseException, type_: Any) -> str:
    """One cattrs leaf failure as ``what was expected`` (the path is added by cattrs)."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, ValueError) and type_ is None:
        return str(exc)  # our validators and ConfigError already say what was expected
    if type_ in _EXPECTED:
        return f"expected {_EXPECTED[type_]}"
    return "expected a table" if isinstance(exc, (TypeError, AttributeError)) else str(exc)


def _strict_strings(value: Any, _: Any) -> tuple[str, ...]:
    """A list of strings, never a bare string (``"BTC/USD"`` is not a list of symbols)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _strict_strings)


def structure(raw: dict[str, Any]) -> Config:
    """Raw TOML data (with overrides applied) → :class:`Config`, or one clear ConfigError."""
    try:
        return _converter.structure(raw, Config)
    except Exception as exc:
        if isinstance(exc, ConfigError):
            raise
        first = cattrs.transform_error(exc, path="$", format_exception=_format)[0]
        text, _, where = first.rpartition(" @ ")
        where = where.removeprefix("$").lstrip(".").replace("['", ".").replace("']", "")
        if not where:
            raise ConfigError(text) from None
        # Validator messages start with their own key ("url: expected …").
        named = ":" in text.split(" ", 1)[0]
        raise ConfigError(f"{where}.{text}" if named else f"{where}: {text}") from None


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or the built-in default), apply environment overrides, validate."""
    environ = os.environ if environ is None else environ
    if path is None:
        raw = tomllib.loads(DEFAULT_TOML)
    else:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"--config {path}: cannot read it ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    _apply_env(raw, environ)
    return structure(raw)
