"""The contract between one exchange's wire protocol and the shared I/O loop.

An :class:`Exchange` describes *what* to say to an exchange (URL, limits, keepalive duty);
its :class:`Decoder` is the per-connection protocol state: it builds subscribe frames and
turns every frame the exchange sends into :class:`~tickerd.model.Ticker` values.  Neither does
any I/O, so both are tested with real frames and no sockets, and the I/O loop in
:mod:`tickerd.feed` stays free of exchange-specific code.
"""

from __future__ import annotations

import abc
import datetime
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

import attrs

from tickerd.model import Ticker

#: ``BASE/QUOTE`` (spot), ``BASE/QUOTE:SETTLE`` (perpetual; inverse when SETTLE is BASE) and
#: ``BASE/QUOTE:SETTLE-YYMMDD`` (dated future, expiring on that day), as the ecosystem
#: (ccxt, fullon) writes them.
UNIFIED_SYMBOL = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+(-[0-9]{6})?)?$")
#: The longest symbol accepted: no market has a longer name, and a symbol is a Redis hash field,
#: a channel name and a label in every record, log line and metric.
MAX_SYMBOL_LENGTH = 64

#: The Ticker fields a feed may or may not deliver (the README's exchange table lists gaps).
TICKER_FIELDS = (
    "last",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "volume_24h",
    "high_24h",
    "low_24h",
    "change_24h",
    "change_pct_24h",
    "exchange_ts",
    "sequence",
)
#: The Ticker fields only derivatives have (perpetuals and futures; spot never has them).
DERIVATIVE_FIELDS = ("mark_price", "index_price", "funding_rate", "next_funding_ts", "open_interest")


#: The sanity rule for a Ticker's numbers, by kind.  Every kind must be finite (NaN and
#: infinity are junk); prices must be positive and amounts (sizes, volume, open interest) not
#: negative, while rates (funding) may be anything finite, negative included.  A numeric field
#: added to :class:`~tickerd.model.Ticker` joins one kind here and one clause in
#: :meth:`Decoder.flaw`; ``tests/test_sanity.py`` checks the two agree.
#: 24 h high/low and change are not checked: the exchanges derive them, and a negative change
#: is normal.
PRICES = ("last", "bid", "ask", "mark_price", "index_price")
AMOUNTS = ("bid_size", "ask_size", "volume_24h", "open_interest")
RATES = ("funding_rate",)
_INF = math.inf
#: Longest junk reason kept: an error can quote the whole offending value.
_REASON_LENGTH = 200


def problem(t: Ticker) -> str | None:
    """Why ``t`` breaks the sanity rule, naming the field and value, or ``None``.

    Absent fields (``None``) pass: whether a field must be present is a per-exchange fact,
    settled where the adapter parses the frame.  :meth:`Decoder.flaw` applies the same rule
    on the hot path and calls this only for a ticker that failed, to name the culprit.
    """
    for kind, names, valid in _KINDS:
        for name in names:
            value = getattr(t, name)
            if value is not None and not valid(value):
                return f"{t.symbol}: {name} {value!r} is not a valid {kind}"
    return None


def _positive(value: float) -> bool:
    return 0.0 < value < _INF


def _not_negative(value: float) -> bool:
    return 0.0 <= value < _INF


#: Each kind of :data:`PRICES` and company with its test, for naming the culprit.
_KINDS: tuple[tuple[str, tuple[str, ...], Callable[[float], bool]], ...] = (
    ("price", PRICES, _positive),
    ("amount", AMOUNTS, _not_negative),
    ("rate", RATES, math.isfinite),
)


@attrs.frozen
class Keepalive:
    """An application-level ping the loop must send every ``interval`` seconds."""

    interval: float
    frame: str


@attrs.frozen
class Subscribed:
    """The exchange confirmed a symbol's subscription."""

    symbol: str


@attrs.frozen
class Rejected:
    """The exchange refused a symbol; the others go on."""

    symbol: str
    reason: str


@attrs.frozen
class Reply:
    """A frame the decoder needs sent now (an answer the protocol demands, a retry)."""

    frame: str


@attrs.frozen
class ReconnectRequested:
    """The exchange asked the client to reconnect (maintenance, forced rotation)."""

    reason: str


Event = Subscribed | Rejected | Reply | ReconnectRequested


@attrs.frozen
class Resolved:
    """Where one connection goes and how it is kept alive, as :meth:`Exchange.resolve` found
    out just before it connects."""

    url: str
    keepalive: Keepalive | None = None
    #: Seconds without a frame after which the exchange counts the connection dead (KuCoin: no
    #: pong within ``pingTimeout`` of a ping); the loop's watchdog then uses the shorter of this
    #: and ``feed.silence_timeout``.  ``None``: the exchange names no such bound.
    silence_timeout: float | None = None


class ResolveError(Exception):
    """:meth:`Exchange.resolve` could not find out where to connect (the REST call failed or
    answered nonsense): a connection failure like any other, retried after a backoff."""


class Decoder(abc.ABC):
    """Per-connection protocol state.

    ``decode`` must never raise: a frame it cannot understand is junk, counted in
    :attr:`junk` and answered with ``[]``.  Anything other than tickers that the loop must
    act on (acks, rejections, frames to send, reconnect requests) is appended to
    :attr:`events`, which the loop drains after each frame.

    Data sanity has two halves.  Which fields a kind of frame must carry is the adapter's
    knowledge, written where it parses the frame: ``float(msg["b"])`` for a field the
    exchange documents as always present (absent, null or not a number: the frame is junk),
    ``optional_float(msg.get("x"))`` for one it may leave out.  Whether the numbers make
    sense is one rule for all, :func:`problem`, applied here to every ticker a decoder
    returns: a frame carrying a ticker that breaks it is junk as a whole.  Decoders that
    merge frames into per-symbol state (:attr:`merges`) apply it themselves, through
    :meth:`flaw`, to the merged candidate *before* they store it, so that a junk frame leaves
    the state (and the next ticker built from it) as it was.
    """

    exchange: ClassVar[str]
    #: The decoder merges several frames into one ticker and checks each candidate with
    #: :meth:`flaw` before keeping it; :meth:`decode` then does not check its tickers again.
    merges: ClassVar[bool] = False
    #: The decoder's tickers may carry the derivative fields (mark and index price, funding,
    #: open interest).  A decoder of spot markets alone says ``False``, and :meth:`flaw` then
    #: skips those four checks for it: spot never has the fields, and the checks cost ~5 % of
    #: a spot frame's decoding.  ``tests/test_manifest.py`` holds that only spot-only adapters
    #: make such decoders.
    derivatives: ClassVar[bool] = True

    def __init__(self, symbols: Iterable[str]) -> None:
        self.junk = 0
        #: Why the latest junk frame was junk; the read loop logs it at DEBUG when
        #: :attr:`junk` moves, so a good frame pays nothing for it.
        self.junk_reason = ""
        #: Tickers whose best bid was above their best ask: written all the same (books do
        #: cross for a moment on some venues), but counted (``tickerd_crossed_books_total``).
        self.crossed = 0
        self.events: list[Event] = []
        self.symbols: set[str] = set()
        for symbol in symbols:
            self.track(symbol)

    def track(self, symbol: str) -> None:
        """Start accepting tickers for ``symbol``; override to keep native-name maps."""
        self.symbols.add(symbol)

    def untrack(self, symbol: str) -> None:
        """Stop accepting tickers for ``symbol`` (late frames after unsubscribe are dropped)."""
        self.symbols.discard(symbol)

    def decode(self, frame: str | bytes) -> list[Ticker]:
        """Turn one frame into the tickers it carries; junk is counted, never raised."""
        try:
            tickers = self._decode(frame)
        except KeyError as exc:  # a field the frame's kind always carries is missing
            return self.junk_frame(f"missing field {exc}")
        except Exception as exc:  # noqa: BLE001 - any malformed frame is junk by definition
            return self.junk_frame(f"{type(exc).__name__}: {exc}")
        if self.merges:
            return tickers
        for ticker in tickers:
            if (reason := self.flaw(ticker)) is not None:
                return self.junk_frame(reason)
        return tickers

    def flaw(self, t: Ticker) -> str | None:
        """Why ``t`` breaks the sanity rule (:func:`problem`), or ``None``, after which a
        crossed book is counted.

        This is the rule of :data:`PRICES`, :data:`AMOUNTS` and :data:`RATES` spelled out, one
        chained comparison per field (NaN fails every comparison, so ``0 < x < inf`` rejects
        NaN and both infinities): it runs for every ticker, and a loop over the field names
        would cost more than the rest of a Binance frame's decoding.
        """
        bid, ask = t.bid, t.ask
        if (
            (bid is None or 0.0 < bid < _INF)
            and (ask is None or 0.0 < ask < _INF)
            and (t.last is None or 0.0 < t.last < _INF)
            and (t.bid_size is None or 0.0 <= t.bid_size < _INF)
            and (t.ask_size is None or 0.0 <= t.ask_size < _INF)
            and (t.volume_24h is None or 0.0 <= t.volume_24h < _INF)
            and (
                not self.derivatives
                or (
                    (t.mark_price is None or 0.0 < t.mark_price < _INF)
                    and (t.index_price is None or 0.0 < t.index_price < _INF)
                    and (t.open_interest is None or 0.0 <= t.open_interest < _INF)
                    and (t.funding_rate is None or -_INF < t.funding_rate < _INF)
                )
            )
        ):
            if bid is not None and ask is not None and bid > ask:
                self.crossed += 1
            return None
        return problem(t) or f"{t.symbol}: breaks the sanity rule"

    def subscribe(self, symbols: Sequence[str]) -> list[str]:
        """Track ``symbols`` and return the frames that subscribe them."""
        for symbol in symbols:
            self.track(symbol)
        return self._subscribe_frames(symbols)

    def unsubscribe(self, symbols: Sequence[str]) -> list[str]:
        """Untrack ``symbols`` and return the frames that unsubscribe them."""
        for symbol in symbols:
            self.untrack(symbol)
        return self._unsubscribe_frames(symbols)

    def junk_frame(self, reason: str = "not a frame of the protocol") -> list[Ticker]:
        """Count a junk frame (one that parsed but means nothing known, or whose ticker has a
        :meth:`flaw`); decoders return this."""
        self.junk += 1
        self.junk_reason = reason[:_REASON_LENGTH]
        return []

    @abc.abstractmethod
    def _decode(self, frame: str | bytes) -> list[Ticker]:
        """Decode; may raise on malformed input (the caller counts it as junk)."""

    @abc.abstractmethod
    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        """Frames that subscribe ``symbols`` (respecting per-message limits)."""

    @abc.abstractmethod
    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        """Frames that unsubscribe ``symbols``."""


class Exchange(abc.ABC):
    """One exchange's static description; :meth:`decoder` makes per-connection state."""

    name: ClassVar[str]
    #: The public websocket URL; config may override it (fake servers in tests).
    url: ClassVar[str]
    #: The REST URL :meth:`resolve` asks where to connect, for exchanges that hand out their
    #: websocket endpoint (and a token) per connection (KuCoin's ``bullet-public``); config may
    #: override it (``rest_url``).  ``None``: the exchange needs no REST call.
    rest_url: ClassVar[str | None] = None
    #: How many symbols one websocket connection may carry, counted in :meth:`channels` where
    #: the exchange's limit is on channels and a symbol takes several.
    max_symbols_per_connection: ClassVar[int]
    #: Seconds after which the exchange drops a connection; the loop rotates before it.
    max_lifetime: ClassVar[float | None] = None
    #: An application-level ping the loop must send, if the exchange wants one.
    keepalive: ClassVar[Keepalive | None] = None
    #: Minimum seconds between two frames the client sends (inbound rate limits).
    send_interval: ClassVar[float] = 0.0
    #: Seconds to wait after connecting before the first frame is sent (Crypto.com pro-rates
    #: its rate limits by the calendar second the connection opened in, and asks for 1 s).
    connect_delay: ClassVar[float] = 0.0
    #: Ticker fields this exchange's feeds never carry (they stay ``None``).
    lacks: ClassVar[tuple[str, ...]] = ()
    #: The per-connection protocol state class.
    decoder_class: ClassVar[type[Decoder]]

    # -- Mechanisms the exchange has or lacks (tests/test_exchange_contract.py) -------------
    # Every exchange runs the same conformance suite; where a venue lacks a mechanism, it says
    # so here and the suite checks tickerd's fallback for it instead of skipping the scenario.
    #: The exchange refuses a subscription to an unknown symbol in a way the decoder can
    #: attribute (an error, an ack that leaves it out), so health lists it as rejected.
    #: ``False``: the subscription is accepted and silently never served; the symbol then
    #: shows as stale after ``health.stale_after``.
    rejects_unknown: ClassVar[bool] = True
    #: The exchange asks clients to reconnect before it closes their connections (the decoder
    #: reports :class:`ReconnectRequested`).  ``False``: connections rotate only at
    #: :attr:`max_lifetime` or the configured ``feed.max_lifetime``.
    reconnect_request: ClassVar[bool] = False
    #: Spot markets only: ``BASE/QUOTE:SETTLE`` symbols are refused up front.
    spot_only: ClassVar[bool] = False
    #: Dated futures (``BASE/QUOTE:SETTLE-YYMMDD``) are served; without it they are refused up
    #: front, as a perpetual's symbol with a date is not the perpetual.
    dated_futures: ClassVar[bool] = False

    # -- Endpoint groups: one subscription, several connections ----------------------------
    #: The connections one set of symbols needs, by name.  Most exchanges serve every stream
    #: of a symbol on one websocket (one group, ``""``).  One that serves a symbol's streams on
    #: several URLs (Binance futures: book tickers on ``/public``, statistics and mark prices
    #: on ``/market``) names a group per URL; :meth:`endpoint` gives each group's URL.  The
    #: I/O loop then runs one connection per group for each set of symbols, each connecting,
    #: backing off and rotating on its own, and their decoders share the set's
    #: :meth:`merged_state`, so every connection's frames update one latest record and a
    #: group that is reconnecting leaves the others' fields in place.
    groups: ClassVar[tuple[str, ...]] = ("",)

    # -- Manifest: the one place an exchange is described to the rest of the project. -----
    # The fake registry (tickerd.testing.fake_for), the demo, bench/decode.py, the examples and
    # the README's exchange table (python -m tickerd.exchanges.table) all read these, so a new
    # exchange is this file, its fake, its decoder tests and one line in the registry.
    #: The fake server, ``"module:Class"``: named, not imported, so that the daemon never
    #: loads test code.
    fake: ClassVar[str]
    #: A few liquid symbols covering the markets the adapter serves (spot and, where it has
    #: them, perpetuals); the first is the default wherever one symbol is wanted.
    sample_symbols: ClassVar[tuple[str, ...]]
    #: README: the channels the adapter subscribes to (Markdown).
    feeds: ClassVar[str]
    #: README: unified ↔ native symbol forms (Markdown).
    symbol_forms: ClassVar[str]
    #: README: keepalive duties beyond the :attr:`keepalive` ping, :attr:`reconnect_request`
    #: and :attr:`max_lifetime` rotation, which the table states from those fields (Markdown).
    keepalive_note: ClassVar[str] = ""
    #: README: caveats on the delivered fields beyond :attr:`lacks` (Markdown).
    lacks_note: ClassVar[str] = ""
    #: README: the unit of ``open_interest`` as the venue reports it (contracts, base currency,
    #: USD…; Markdown); empty where the adapter delivers no open interest.
    open_interest_unit: ClassVar[str] = ""
    #: README: which stream's field supplies ``sequence`` (Markdown); empty: the venue sends
    #: none (``sequence`` is then in :attr:`lacks`).
    sequence_source: ClassVar[str] = ""

    @property
    def provides(self) -> tuple[str, ...]:
        """The Ticker fields this exchange delivers (for its derivatives, where it has them)."""
        fields = TICKER_FIELDS if self.spot_only else TICKER_FIELDS + DERIVATIVE_FIELDS
        return tuple(field for field in fields if field not in self.lacks)

    def check_symbol(self, symbol: str) -> None:
        """Raise ``ValueError`` naming the expected form if ``symbol`` is unusable here."""
        if len(symbol) > MAX_SYMBOL_LENGTH:
            shown = symbol[: MAX_SYMBOL_LENGTH // 4]
            raise ValueError(f"{shown!r}…: {len(symbol)} characters, at most {MAX_SYMBOL_LENGTH}")
        parts = market(symbol)  # raises for what is not a unified symbol
        if self.spot_only and not parts.spot:
            raise ValueError(f"{symbol!r}: the {self.name} adapter serves spot only (expected BASE/QUOTE)")
        if parts.expiry is not None and not self.dated_futures:
            raise ValueError(
                f"{symbol!r}: the {self.name} adapter serves no dated futures "
                "(expected BASE/QUOTE or BASE/QUOTE:SETTLE)"
            )

    def channels(self, symbol: str) -> int:
        """How much of a connection's :attr:`max_symbols_per_connection` ``symbol`` takes: one,
        unless the exchange limits channels a connection and the symbol needs several (a
        Bitfinex perpetual: ``ticker`` and ``status``)."""
        return 1

    def endpoint(self, url: str, symbol: str, group: str = "") -> str:
        """The websocket URL that serves ``symbol``'s streams of ``group`` (:attr:`groups`);
        symbols are grouped into connections by it.

        Most exchanges serve everything on one URL; exchanges with one URL per market
        category (spot, linear) or per group of streams override this.
        """
        return url

    async def resolve(self, url: str, group: str, rest_url: str | None) -> Resolved:
        """Where the next connection of ``group`` goes and how it is kept alive, found out just
        before every connect: ``url`` is the group's :meth:`endpoint`, ``rest_url`` the
        configured or the adapter's :attr:`rest_url`.

        Most exchanges have a fixed URL and :attr:`keepalive`; one that hands out its endpoint
        and ping interval over REST (KuCoin) asks here, so each reconnect gets a fresh answer.
        Raises :class:`ResolveError` with a reason fit for the health record when it cannot.
        """
        return Resolved(url, self.keepalive)

    def merged_state(self) -> object:
        """The state the decoders of one set of symbols share across their groups' connections
        and across reconnects (:attr:`groups`): made once per set, handed to every
        :meth:`decoder` of it.  ``None`` for adapters that keep all their state per connection."""
        return None

    def decoder(self, symbols: Iterable[str], group: str = "", merged: object = None) -> Decoder:
        """A fresh decoder for one connection of ``group`` carrying ``symbols``; ``merged`` is
        the set's :meth:`merged_state`.  Adapters with groups or merged state override this."""
        return self.decoder_class(symbols)


@attrs.frozen
class Market:
    """The parts of a unified symbol: ``BTC/USDT:USDT-261225`` is the BTC/USDT future settled
    in USDT that expires on 25 December 2026."""

    base: str
    quote: str
    #: ``None`` for spot.
    settle: str | None = None
    #: ``YYMMDD`` for a dated future, ``None`` for spot and perpetuals.
    expiry: str | None = None

    @property
    def spot(self) -> bool:
        return self.settle is None

    @property
    def perpetual(self) -> bool:
        return self.settle is not None and self.expiry is None

    @property
    def inverse(self) -> bool:
        """Margined and settled in the base asset (``BTC/USD:BTC``)."""
        return self.settle == self.base

    @property
    def symbol(self) -> str:
        """The unified symbol again."""
        settle = "" if self.settle is None else f":{self.settle}"
        expiry = "" if self.expiry is None else f"-{self.expiry}"
        return f"{self.base}/{self.quote}{settle}{expiry}"


def market(symbol: str) -> Market:
    """``symbol``'s parts; ``ValueError`` naming the expected forms for anything else, an expiry
    that is not a calendar date included."""
    if not UNIFIED_SYMBOL.match(symbol):
        raise ValueError(
            f"{symbol!r} is not a unified symbol "
            "(expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)"
        )
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    settle, _, expiry = settle.partition("-")
    if expiry:
        try:
            datetime.datetime.strptime(expiry, "%y%m%d")
        except ValueError:
            raise ValueError(f"{symbol!r}: expiry {expiry!r} is not a date (expected YYMMDD)") from None
    return Market(base, quote, settle or None, expiry or None)


def split_unified(symbol: str) -> tuple[str, str, str | None]:
    """``BTC/USDT:USDT`` → ``("BTC", "USDT", "USDT")``; spot symbols have no settle.  A dated
    future's expiry is not part of its settle (:func:`market` has it)."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    return base, quote, settle.partition("-")[0] or None


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    """Split ``items`` into slices of at most ``size`` (per-message or per-connection limits)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def optional_float(value: object) -> float | None:
    """Exchanges send numbers as strings, numbers, ``""`` or ``null``; normalise to float."""
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]
