"""Configuration: a TOML file (or the built-in default) overridden by environment variables.

Everything is validated at the edge, before any connection is opened: an invalid
configuration gives one :class:`ConfigError` that lists every problem, each naming the key (or
the environment variable) and the expected form.  Nothing is coerced: ``1.5`` is no whole
number, ``"5"`` no number, ``nan`` and ``inf`` are refused everywhere.  Durations have lower
bounds (the README lists them) because a loop woken every 0.1 ms is a busy loop.

Each setting says what it means in its attrs ``metadata`` (:data:`HELP`), which
``tickerd config sample`` prints (:mod:`tickerd.sample`): a new setting needs its help, and a
test fails without it.
"""

from __future__ import annotations

import copy
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, IterableValidationNote

from tickerd import exchanges, topology
from tickerd.backoff import Backoff
from tickerd.layout import LAYOUTS, RedisLayout
from tickerd.redact import redact
from tickerd.transport import DEFAULT_ENGINE, Target, TransportError, engine_names

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """An invalid configuration; the message is meant for the person who wrote it.

    ``problems`` holds every problem found (the message lists them all), so one run shows
    everything to fix rather than one error per attempt.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = problems
        listed = "".join(f"\n  {problem}" for problem in problems)
        super().__init__(problems[0] if len(problems) == 1 else f"{len(problems)} problems:{listed}")


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


#: ``feed.batch_window``: its default and the most it may be (a latency budget, not a poll).
#: Off by default: measured on the 2-core machine, 2 ms saved nothing over the writer's own
#: batching at 1,000-5,000 frames/s and cost 2-4 ms of p99; 10 ms cuts the CPU of wide and slow
#: deployments ~2.3x (README, Benchmarks), a trade each deployment makes for itself.
DEFAULT_BATCH_WINDOW = 0.0
MAX_BATCH_WINDOW = 0.1


def _seconds(minimum: float) -> Validator:
    """A finite duration of at least ``minimum`` seconds (``nan`` fails every comparison, so
    it is refused explicitly rather than slipping through ``value <= 0``)."""

    def check(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and value >= minimum):
            raise ValueError(
                f"{attribute.name}: expected a positive number of seconds, at least {minimum:g}, "
                f"got {value!r}"
            )

    return check


def _batch_window(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_BATCH_WINDOW):
        raise ValueError(
            f"{attribute.name}: expected seconds from 0 (off) to {MAX_BATCH_WINDOW:g}, got {value!r}"
        )


def _not_below(other: str) -> Validator:
    """At least the sibling field ``other`` (a cap below its own start value means nothing)."""

    def check(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        floor = getattr(instance, other)
        if value < floor:
            raise ValueError(f"{attribute.name}: expected at least {other} ({floor:g}), got {value!r}")

    return check


def _not_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{attribute.name}: expected 0 (retry forever) or a larger whole number, got {value!r}"
        )


def _shown(url: str) -> str:
    """A URL as an error message quotes it: redacted, or not at all when it holds a blank
    (:func:`~tickerd.redact.redact` reads an authority up to the first blank, so part of a
    password with a space in it would show)."""
    return "a URL with blanks in it" if any(c.isspace() for c in url) else repr(redact(url))


def _redis_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    problem = ""
    try:
        parsed = topology.parse(value)
        port = urlsplit(value).port if parsed.kind == "server" else 1  # out of range raises here
    except ValueError as exc:
        port = 0
        if urlsplit(value).scheme.endswith(("+cluster", "+sentinel")):
            problem = f" ({exc})"
    if port == 0:
        raise ValueError(f"{attribute.name}: expected {topology.FORMS}, got {_shown(value)}{problem}")


def _websocket_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    """What the transport can connect to (the same check it makes), so that ``http://…``
    fails at start instead of on every reconnect."""
    if value is None:
        return
    try:
        Target.parse(value)
    except TransportError:
        raise ValueError(
            f"{attribute.name}: expected ws://HOST[:PORT]/PATH or wss://…, got {_shown(value)}"
        ) from None


def _rest_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    """An absolute ``http(s)://`` URL with a host, so that a typo fails at start instead of on
    every reconnect."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - out of range raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{attribute.name}: expected http://HOST[:PORT]/PATH or https://…, got {redact(value)!r}"
        )


def _one_of(name: str, value: str, options: tuple[str, ...] | list[str]) -> None:
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}, got {value!r}")


def _engine(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _one_of(attribute.name, value, engine_names())


def _layout(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    _one_of(attribute.name, value, LAYOUTS)


#: The server used when no URL is configured (``tickerd run`` falls back to a private one).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: The ``metadata`` key of every setting's meaning, written for the person configuring it:
#: ``tickerd config sample`` (:mod:`tickerd.sample`) prints it above the key, so the
#: explanation lives once, beside the field, and the sample cannot drift from the classes.
HELP = "help"
#: The ``metadata`` key of a valid value for a setting that is unset by default (``None``
#: cannot be written in TOML): the sample shows it commented out.
EXAMPLE = "example"


def _help(text: str, example: object = None) -> dict[str, object]:
    """A field's ``metadata``: its meaning and, when it is unset by default, an example value."""
    return {HELP: text} if example is None else {HELP: text, EXAMPLE: example}


@attrs.frozen
class RedisSettings:
    """Where tickers go; ``prefix`` namespaces every key (tests, several daemons on one server).

    ``url`` is ``None`` unless configured (TOML or ``REDIS_URL``/``REDIS_HOST``…), because an
    explicit server is waited for while the default one may be replaced by a private server
    (:mod:`tickerd.embedded`).
    """

    url: str | None = attrs.field(
        default=None,
        validator=_redis_url,
        metadata=_help(
            "The Redis server: `redis://[:PASSWORD@]HOST:PORT/DB`, `rediss://…` (TLS) or `unix://PATH`; "
            "a Redis Cluster: `redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT…]` (any of its nodes); "
            "a master behind Sentinel: `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTERNAME[/DB]` "
            "(the Sentinels; the password is the master's, `?sentinel_password=…` the Sentinels'); "
            "`rediss+cluster://`, `rediss+sentinel://` for TLS. "
            "Unset: 127.0.0.1:6379, or a private redis-server started by tickerd when nothing answers "
            "there; a configured server is waited for instead.",
            DEFAULT_REDIS_URL,
        ),
    )
    prefix: str = attrs.field(
        default="", metadata=_help("Put before every key: several daemons (or tests) on one server.")
    )
    lease_expiry: float = attrs.field(
        default=15.0,
        validator=_seconds(1.0),
        metadata=_help(
            "One daemon per prefix: seconds the lease on `prefix` outlives its holder. A second daemon "
            "exits 2; after a `kill -9` a successor is blocked this long at most. Renewed every third "
            "of it."
        ),
    )
    layout: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_layout),
        metadata=_help(
            "The ticker record: `extended` (fullon's `Tick` fields plus tickerd's own) or `fullon` "
            "(exactly fullon's fields, plus its `ticker_time` keys). Unset: `fullon` when "
            '`database.mode = "fullon"`, `extended` otherwise.',
            "extended",
        ),
    )

    @property
    def address(self) -> str:
        """The configured URL, else the default local server."""
        return self.url or DEFAULT_REDIS_URL


def _upper(value: object) -> str:
    return str(value).upper()


@attrs.frozen
class LogSettings:
    level: str = attrs.field(
        default="INFO",
        converter=_upper,
        validator=lambda _, a, v: _one_of(a.name, v, LOG_LEVELS),
        metadata=_help(f"The least severe level logged: {', '.join(LOG_LEVELS)} (any case)."),
    )
    format: str = attrs.field(
        default="text",
        validator=lambda _, a, v: _one_of(a.name, v, ("text", "json")),
        metadata=_help("`text` for people, `json` (one object a line) for log shippers."),
    )


@attrs.frozen
class FeedSettings:
    """Timing and engine of the shared I/O loop (every exchange uses the same loop)."""

    reconnect_delay: float = attrs.field(
        default=1.0,
        validator=_seconds(0.01),
        metadata=_help(
            "Seconds before the first reconnect; doubles per consecutive failure, with jitter, up to "
            "`max_reconnect_delay`."
        ),
    )
    max_reconnect_delay: float = attrs.field(
        default=60.0,
        validator=[_seconds(1.0), _not_below("reconnect_delay")],
        metadata=_help("The longest wait between two reconnects, in seconds."),
    )
    max_retries: int = attrs.field(
        default=0,
        validator=_not_negative,
        metadata=_help("0 retries forever; after N consecutive failures the connection is marked failed."),
    )
    silence_timeout: float = attrs.field(
        default=30.0,
        validator=_seconds(1.0),
        metadata=_help("No frame for this many seconds means a dead connection: it is replaced."),
    )
    healthy_after: float = attrs.field(
        default=30.0,
        validator=_seconds(1.0),
        metadata=_help("A connection that delivered tickers this many seconds resets the backoff."),
    )
    ready_timeout: float = attrs.field(
        default=10.0,
        validator=_seconds(1.0),
        metadata=_help(
            "Seconds a new connection may take to confirm its subscriptions before it counts as up."
        ),
    )
    max_lifetime: float | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_seconds(60.0)),
        metadata=_help(
            "Rotate every connection after this many seconds (make-before-break), or sooner where the "
            "exchange's own limit is shorter (Binance: 24 h). Unset: only at the exchange's own limit.",
            86400.0,
        ),
    )
    batch_window: float = attrs.field(
        default=DEFAULT_BATCH_WINDOW,
        validator=_batch_window,
        metadata=_help(
            "Seconds a connection that just handed tickers on waits before it reads again, so that "
            "what arrives meanwhile, on it and on every other connection, is decoded and written "
            "together: one wake-up of the process for many frames (e.g. 0.01: less CPU for wide or "
            "slow deployments). The price is at most this much latency while frames keep coming; a "
            "frame after a quiet spell is read at once. 0 reads every frame as it comes."
        ),
    )
    engine: str = attrs.field(
        default=DEFAULT_ENGINE,
        validator=_engine,
        metadata=_help(
            f"The websocket engine: {' or '.join(engine_names())}; `[exchanges.NAME] engine` "
            "overrides it for one exchange."
        ),
    )
    ca_file: str | None = attrs.field(
        default=None,
        metadata=_help(
            "An extra CA bundle (PEM) for `wss://`, e.g. a private relay's. Unset: the system store.",
            "/etc/tickerd/relay-ca.pem",
        ),
    )

    @property
    def backoff(self) -> Backoff:
        """The reconnect policy: ``reconnect_delay`` doubling up to ``max_reconnect_delay``."""
        return Backoff(self.reconnect_delay, self.max_reconnect_delay)


@attrs.frozen
class HealthSettings:
    """Health records in Redis and the staleness rule (see :mod:`tickerd.monitor`)."""

    interval: float = attrs.field(
        default=30.0,
        validator=_seconds(1.0),
        metadata=_help(
            "Seconds between two steady-state health writes of one exchange; state changes are "
            "written at once. Records expire after three intervals, so a dead daemon disappears."
        ),
    )
    stale_after: float = attrs.field(
        default=60.0,
        validator=_seconds(1.0),
        metadata=_help("A subscribed symbol with no update for this many seconds is stale."),
    )


def _libpq_reason(exc: Exception, shown: str) -> str:
    """psycopg's reason for refusing a connection string, with the pieces of the string it
    quotes masked unless ``shown`` (the redacted string) already holds them: libpq quotes what
    it could not read, and that may be the password (``missing "=" after "hunter2"``)."""

    def mask(match: re.Match[str]) -> str:
        piece = match[1]
        return match[0] if piece in shown or not any(c.isalnum() for c in piece) else '"…"'

    return re.sub(r'"([^"]*)"', mask, str(exc).strip())


def _database_url(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    from psycopg import ProgrammingError  # imported only when a database is configured
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        # A URL is shown redacted; an unreadable key=value string not at all, since where its
        # password is cannot be told (``host=db password hunter2``).
        shown = _shown(value) if "://" in value else "an unreadable key=value string"
        raise ValueError(
            f"{attribute.name}: expected postgresql://USER@HOST:PORT/DBNAME or 'host=… dbname=…', "
            f"got {shown} ({_libpq_reason(exc, shown)})"
        ) from None


def _identifier(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,50}", value):
        raise ValueError(f"{attribute.name}: expected a lower-case SQL name such as tickerd, got {value!r}")


@attrs.frozen
class DatabaseSettings:
    """PostgreSQL as the source of subscriptions (instead of the TOML ``[exchanges]``)."""

    url: str | None = attrs.field(
        default=None,
        validator=_database_url,
        metadata=_help(
            'A libpq URL or "host=… dbname=…" string. Set, the exchanges and symbols to collect come '
            "from PostgreSQL (create the tables with `tickerd db init`, edit them with `tickerd "
            "symbols`); unset, from the `[exchanges]` tables of this file.",
            "postgresql://tickerd@db.example:5432/markets",
        ),
    )
    mode: str = attrs.field(
        default="tickerd",
        validator=lambda _, a, v: _one_of(a.name, v, ("tickerd", "fullon")),
        metadata=_help(
            "`tickerd`: tickerd's own tables, followed live through LISTEN/NOTIFY; `fullon`: an "
            "existing fullon database, read as it is."
        ),
    )
    schema: str = attrs.field(
        default="tickerd",
        validator=_identifier,
        metadata=_help("The PostgreSQL schema that holds tickerd's tables (`tickerd` mode)."),
    )
    refresh: float = attrs.field(
        default=60.0,
        validator=_seconds(0.05),
        metadata=_help(
            "Seconds between full re-reads (they catch a lost notification; fullon mode's only way)."
        ),
    )
    admin_mail: str = attrs.field(
        default="admin@fullon",
        metadata=_help("fullon mode: the user whose active exchanges are collected."),
    )


#: ``fullon.process_records``: one fullon process record per exchange, one per symbol, or none.
PROCESS_RECORDS = ("exchange", "symbol", "off")


def _process_records(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        _one_of(attribute.name, value, PROCESS_RECORDS)


@attrs.frozen
class FullonSettings:
    """What tickerd writes for fullon's own readers besides the tickers (:mod:`tickerd.fullon`)."""

    process_records: str | None = attrs.field(
        default=None,
        validator=_process_records,
        metadata=_help(
            "fullon process records (`ProcessCache`): `exchange`, `symbol` or `off`. Unset: "
            '`exchange` when `database.mode = "fullon"`, `off` otherwise.',
            "exchange",
        ),
    )


#: What a fleet name may be made of: it is written inside braces in every fleet key (a Redis
#: Cluster hash tag, :meth:`RedisLayout.fleet_member`), so no braces, and no blanks.
_FLEET_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _fleet_name(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not _FLEET_NAME.fullmatch(value):
        raise ValueError(f"{attribute.name}: expected 1-64 letters, digits, '_', '.' or '-', got {value!r}")


def _instance_id(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (not value or len(value) > 200 or re.search(r"[\s{}]", value)):
        raise ValueError(
            f"{attribute.name}: expected an id without blanks or braces (a host name, a pod name), "
            f"got {value!r}"
        )


def _replicas(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name}: expected a whole number of at least 1, got {value!r}")


@attrs.frozen
class FleetSettings:
    """Several instances sharing (or replicating) the subscriptions (:mod:`tickerd.fleet`)."""

    name: str | None = attrs.field(
        default=None,
        validator=_fleet_name,
        metadata=_help(
            "Run as a member of this fleet: the instances of one name on one Redis and prefix share "
            "the subscriptions (each symbol collected by `replicas` of them) and take over a dead "
            "member's. Unset: a single instance, which owns its prefix alone.",
            "prod",
        ),
    )
    instance: str | None = attrs.field(
        default=None,
        validator=_instance_id,
        metadata=_help(
            "This member's id in the fleet, unique in it (a Kubernetes pod name, say). Unset: `HOST:PID`.",
            "tickerd-0",
        ),
    )
    lease: float = attrs.field(
        default=10.0,
        validator=_seconds(1.0),
        metadata=_help(
            "Seconds a member's record outlives it: a member killed without a word is replaced "
            "after this long at most. Renewed every third of it."
        ),
    )
    replicas: int = attrs.field(
        default=1,
        validator=_replicas,
        metadata=_help(
            "How many members collect each symbol: 1 shares the symbols out, 2 or more keeps a "
            "symbol updating with no gap when one of its members dies."
        ),
    )
    handover_grace: float = attrs.field(
        default=5.0,
        validator=_seconds(0.0),
        metadata=_help(
            "Seconds a member that lost a symbol to another keeps collecting it, unless the new "
            "member reports it delivered sooner (make-before-break)."
        ),
    )

    @property
    def instance_id(self) -> str:
        """``instance``, else ``HOST:PID`` (the same for the whole life of the process)."""
        return self.instance or f"{socket.gethostname()}:{os.getpid()}"


def _symbols_per_connection(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    """A whole number of at least 1 (the adapter's own cap is checked where the adapter is
    known: :func:`_exchanges`)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name}: expected a whole number of at least 1, got {value!r}")


@attrs.frozen
class ExchangeConfig:
    symbols: tuple[str, ...] = attrs.field(
        default=(),
        metadata=_help(
            "The symbols to collect, unified: `BASE/QUOTE` (spot), `BASE/QUOTE:SETTLE` (perpetual), "
            "`BASE/QUOTE:SETTLE-YYMMDD` (dated future). Not used when a database is configured."
        ),
    )
    url: str | None = attrs.field(
        default=None,
        validator=_websocket_url,
        metadata=_help(
            "The websocket URL to use instead of the exchange's own (a relay, a fake exchange).",
            "ws://127.0.0.1:9000/ws",
        ),
    )
    rest_url: str | None = attrs.field(
        default=None,
        validator=_rest_url,
        metadata=_help(
            "The REST URL to ask for the websocket endpoint instead of the exchange's own, for "
            "exchanges that hand it out per connection (KuCoin's `bullet-public`; a fake exchange "
            "serves it too). Exchanges that make no REST call before they connect ignore it.",
            "http://127.0.0.1:9001/api/v1/bullet-public",
        ),
    )
    engine: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_engine),
        metadata=_help("This exchange's websocket engine. Unset: `[feed] engine`.", "trio-websocket"),
    )
    enabled: bool = attrs.field(
        default=True,
        metadata=_help(
            "false stops collecting this exchange and keeps its table. Not used when a database is "
            "configured."
        ),
    )
    symbols_per_connection: int | None = attrs.field(
        default=None,
        validator=_symbols_per_connection,
        metadata=_help(
            "At most this many symbols on one connection, below the exchange's own limit (the "
            "README's exchange table): a wide deployment spreads its load over more connections, "
            "and a dropped connection takes fewer symbols with it. Unset: the exchange's limit. "
            "Counted as the exchange counts its limit (a Bitfinex perpetual takes two).",
            20,
        ),
    )

    def connection_limit(self, adapter: exchanges.Exchange) -> int:
        """Symbols one connection of ``adapter`` may carry under these settings: a configured
        value above the adapter's limit is refused (:func:`_exchanges`), and one given in code
        (``apply``) is capped by it, since the limit is the exchange's, not a preference."""
        limit = adapter.max_symbols_per_connection
        return limit if self.symbols_per_connection is None else min(self.symbols_per_connection, limit)


def _exchanges(
    instance: object, attribute: attrs.Attribute[dict[str, ExchangeConfig]], value: dict[str, ExchangeConfig]
) -> None:
    """Every exchange known and every symbol usable on it (each problem listed)."""
    problems = []
    for name, exchange in value.items():
        try:
            adapter = exchanges.get(name)
        except KeyError as exc:
            problems.append(f"{attribute.name}.{name}: {exc.args[0]}")
            continue
        for symbol in exchange.symbols:
            try:
                adapter.check_symbol(symbol)
            except ValueError as exc:
                problems.append(f"{attribute.name}.{name}.symbols: {exc}")
        limit = adapter.max_symbols_per_connection
        if exchange.symbols_per_connection is not None and exchange.symbols_per_connection > limit:
            problems.append(
                f"{attribute.name}.{name}.symbols_per_connection: expected at most {limit} "
                f"({name}'s limit of symbols a connection), got {exchange.symbols_per_connection}"
            )
    if problems:
        raise ConfigError(*problems)


@attrs.frozen
class Config:
    redis: RedisSettings = attrs.field(
        default=RedisSettings(),
        metadata=_help("Where tickers go: the Redis server, the key prefix and the ticker record."),
    )
    log: LogSettings = attrs.field(default=LogSettings(), metadata=_help("What tickerd logs, and how."))
    feed: FeedSettings = attrs.field(
        default=FeedSettings(),
        metadata=_help("Timing and engine of the websocket loop every exchange shares."),
    )
    health: HealthSettings = attrs.field(
        default=HealthSettings(),
        metadata=_help("Health records in Redis (what `tickerd status` reads) and the staleness rule."),
    )
    exchanges: dict[str, ExchangeConfig] = attrs.field(
        factory=dict,
        validator=_exchanges,
        metadata=_help(
            "One `[exchanges.NAME]` table per exchange to collect; NAME as in the README's exchange "
            "table. With a database configured, the symbols come from PostgreSQL and these tables "
            "give only `url`, `engine` and `symbols_per_connection`."
        ),
    )
    database: DatabaseSettings = attrs.field(
        default=DatabaseSettings(),
        metadata=_help("PostgreSQL as the source of subscriptions, instead of `[exchanges]`."),
    )
    fullon: FullonSettings = attrs.field(
        default=FullonSettings(),
        metadata=_help("What tickerd writes for fullon's own readers besides the tickers."),
    )
    fleet: FleetSettings = attrs.field(
        default=FleetSettings(),
        metadata=_help("Several instances on one Redis sharing or replicating the subscriptions."),
    )
    shutdown_grace: float = attrs.field(
        default=5.0,
        validator=_seconds(0.1),
        metadata=_help(
            "Seconds the shutdown may take to flush the latest values to Redis, whatever Redis does: "
            "values still unwritten then are counted in the log and tickerd exits 1."
        ),
    )

    @property
    def process_records(self) -> str:
        """``fullon.process_records``, or its default: on (per exchange) for a fullon
        deployment, whose dashboards read them, and off otherwise (nobody reads them)."""
        if self.fullon.process_records is not None:
            return self.fullon.process_records
        return "exchange" if self.database.mode == "fullon" else "off"

    @property
    def fleet_mode(self) -> bool:
        """Whether this instance is a member of a fleet (``fleet.name`` set)."""
        return self.fleet.name is not None

    @property
    def layout(self) -> RedisLayout:
        """The key names and ticker record under ``redis.prefix``: ``redis.layout`` if set, else
        fullon's strict record in fullon mode (its programs read the hashes) and the extended
        one otherwise.  Decided here because it depends on two sections.  A fleet writes
        monotonically (several instances may write one key: the older value must not win)."""
        kind = self.redis.layout or ("fullon" if self.database.mode == "fullon" else "extended")
        return RedisLayout(self.redis.prefix, kind, monotonic=self.fleet_mode)


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
    "REDIS_LAYOUT": (("redis", "layout"), str),
    "LOG_LEVEL": (("log", "level"), str),
    "LOG_FORMAT": (("log", "format"), str),
    "TICKER_RECONNECT_DELAY": (("feed", "reconnect_delay"), float),
    "TICKER_MAX_RETRIES": (("feed", "max_retries"), int),
    "TICKER_SILENCE_TIMEOUT": (("feed", "silence_timeout"), float),
    "TICKER_ENGINE": (("feed", "engine"), str),
    "TICKER_BATCH_WINDOW": (("feed", "batch_window"), float),
    "TICKER_STALE_AFTER": (("health", "stale_after"), float),
    "DATABASE_URL": (("database", "url"), str),
    "DATABASE_MODE": (("database", "mode"), str),
    "DATABASE_REFRESH": (("database", "refresh"), float),
    "ADMIN_MAIL": (("database", "admin_mail"), str),
    "TICKER_PROCESS_RECORDS": (("fullon", "process_records"), str),
    "TICKER_FLEET_NAME": (("fleet", "name"), str),
    "TICKER_FLEET_INSTANCE": (("fleet", "instance"), str),
    "TICKER_FLEET_REPLICAS": (("fleet", "replicas"), int),
}

#: The variables that build ``redis.url`` together when ``REDIS_URL`` is not set.
_REDIS_PARTS = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB")


def environment_variables(key: str | None = None) -> tuple[str, ...]:
    """The environment variables that override ``key`` (``feed.silence_timeout`` →
    ``TICKER_SILENCE_TIMEOUT``) the way :func:`load` applies them, or every one of them."""
    named = tuple(name for name, (path, _) in _ENV.items() if key in (None, ".".join(path)))
    return (*named, *_REDIS_PARTS) if key in (None, "redis.url") else named


_converter = cattrs.Converter(forbid_extra_keys=True)


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Overlay environment variables on the TOML data, parsing each with a clear message.

    Returns which key each variable set (``feed.silence_timeout`` → ``TICKER_SILENCE_TIMEOUT``),
    so that a problem with the value names the variable the person actually set, and the
    variables that could not be parsed at all (left out, reported with the rest).
    """
    origins: dict[str, str] = {}
    problems: list[str] = []
    if "REDIS_URL" not in environ and any(k in environ for k in _REDIS_PARTS):
        host = environ.get("REDIS_HOST", "127.0.0.1")
        port, db = environ.get("REDIS_PORT", "6379"), environ.get("REDIS_DB", "0")
        wrong = [
            (key, number) for key, number in (("REDIS_PORT", port), ("REDIS_DB", db)) if not number.isdigit()
        ]
        problems += [f"{key}: expected a whole number, got {number!r}" for key, number in wrong]
        if not wrong:
            raw.setdefault("redis", {})["url"] = f"redis://{host}:{port}/{db}"
            origins["redis.url"] = "/".join(k for k in _REDIS_PARTS if k in environ)
    for key, (path, kind) in _ENV.items():
        if key not in environ:
            continue
        text = environ[key]
        try:
            value: Any = kind(text)
        except ValueError:
            problems.append(
                f"{key}: expected {'a whole number' if kind is int else 'a number'}, got {text!r}"
            )
            continue
        section = raw
        for part in path[:-1]:
            section = section.setdefault(part, {})
        section[path[-1]] = value
        origins[".".join(path)] = key
    return origins, problems


class _Expected(TypeError):
    """A value of the wrong kind; the message says what was expected."""


#: The plain types a configuration holds: the Python types accepted for each, and its name.
_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    float: ((int, float), "a number"),
    int: ((int,), "a whole number"),
    str: ((str,), "a string"),
    bool: ((bool,), "true or false"),
}


def _strict(value: Any, type_: type) -> Any:
    """``value`` as ``type_`` only if it already is one: cattrs' own hooks call ``int(1.5)``,
    ``float("5")`` and ``bool("no")``, which would turn a mistake into a surprise."""
    accepted, expected = _KINDS[type_]
    if type(value) not in accepted:  # exact types: True is no number, 1.0 no whole number
        raise _Expected(f"expected {expected}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Expected(f"expected a finite number, got {value!r}")
    return float(value) if type_ is float else value


def _strict_strings(value: Any, _: Any) -> tuple[str, ...]:
    """A list of strings, never a bare string (``"BTC/USD"`` is not a list of symbols)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Expected("expected a list of strings")
    return tuple(value)


for _kind in _KINDS:
    _converter.register_structure_hook(_kind, _strict)
_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _strict_strings)


def _format(exc: BaseException, type_: Any) -> str:
    """One cattrs leaf failure as ``what was expected`` (the path is added by cattrs)."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, _Expected):
        return str(exc)
    return "expected a table" if isinstance(exc, (TypeError, AttributeError)) else str(exc)


def _type_problems(exc: Exception) -> list[str]:
    """Every leaf failure of a cattrs error as ``path: what was expected``."""
    problems = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        text, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").lstrip(".").replace("['", ".").replace("']", "")
        problems.append(f"{where}: {text}" if where else text)
    return problems


def _rule_problems(value: Any, path: str = "") -> list[str]:
    """Every failing validator of ``value`` and of the sections it holds, as ``path: problem``.

    attrs stops a class at its first failing validator; running each field's validator here
    lists them all.  Validator messages start with their own field name.
    """
    problems: list[str] = []
    for field in attrs.fields(type(value)):
        item = getattr(value, field.name)
        if field.validator is not None:
            try:
                field.validator(value, field, item)
            except ConfigError as exc:
                problems += [path + problem for problem in exc.problems]
            except ValueError as exc:
                problems.append(path + str(exc))
        if attrs.has(type(item)):
            problems += _rule_problems(item, f"{path}{field.name}.")
        elif isinstance(item, dict):
            for key, entry in item.items():
                if attrs.has(type(entry)):
                    problems += _rule_problems(entry, f"{path}{field.name}.{key}.")
    return problems


def _name_origin(problem: str, origins: Mapping[str, str]) -> str:
    """``feed.silence_timeout: …`` set from the environment → ``TICKER_SILENCE_TIMEOUT (…): …``."""
    where, colon, text = problem.partition(": ")
    return f"{origins[where]} ({where}){colon}{text}" if where in origins else problem


def _structure_types(raw: dict[str, Any]) -> Config:
    """``raw`` as a :class:`Config` of the right types, its values' rules not yet checked.

    The switch is process-wide; this is synchronous, so no other task builds attrs values
    while it is off."""
    with attrs.validators.disabled():
        return _converter.structure(raw, Config)


def _drop_invalid(raw: dict[str, Any], exc: BaseException, path: tuple[Any, ...] = ()) -> None:
    """Remove from ``raw`` every value (and unknown key) that the cattrs error ``exc`` names, so
    that what remains structures: the path of each failure is read from cattrs' notes (the
    attribute, or the key of a table of tables)."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        table = _at(raw, path)
        for key in exc.extra_fields:
            table.pop(key, None)
    elif isinstance(exc, cattrs.BaseValidationError):
        for inner in exc.exceptions:
            step = [
                note.name if isinstance(note, AttributeValidationNote) else note.index
                for note in getattr(inner, "__notes__", ())
                if isinstance(note, AttributeValidationNote | IterableValidationNote)
            ]
            _drop_invalid(raw, inner, (*path, *step[:1]))
    elif path:
        _at(raw, path[:-1]).pop(path[-1], None)


def _at(raw: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for key in path:
        raw = raw[key]
    return raw


def structure(raw: dict[str, Any], origins: Mapping[str, str] | None = None) -> Config:
    """Raw TOML data (with overrides applied) → :class:`Config`, or one ConfigError listing
    every problem; ``origins`` names the environment variable behind a key."""
    # Types first, then every field's rules (all of them, not attrs' first failure).  Values
    # of the wrong kind are reported, then left out, so that the rules are checked on the rest
    # in the same run: one run lists every problem of the file.
    problems: list[str] = []
    raw = copy.deepcopy(raw)
    try:
        config = _structure_types(raw)
    except (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError) as exc:
        problems = _type_problems(exc)
        _drop_invalid(raw, exc)
        try:
            config = _structure_types(raw)
        except (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError):  # nothing left to check
            raise ConfigError(*(_name_origin(problem, origins or {}) for problem in problems)) from None
    problems += _rule_problems(config)
    if problems:
        raise ConfigError(*(_name_origin(problem, origins or {}) for problem in problems))
    return config


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
    origins, unparsed = _apply_env(raw, environ)
    try:
        config = structure(raw, origins)
    except ConfigError as exc:
        raise ConfigError(*unparsed, *exc.problems) from None
    if unparsed:
        raise ConfigError(*unparsed)
    return config
