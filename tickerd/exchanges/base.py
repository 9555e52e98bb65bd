"""The contract between one exchange's wire protocol and the shared I/O loop.

An :class:`Exchange` describes *what* to say to an exchange (URL, limits, keepalive duty);
its :class:`Decoder` is the per-connection protocol state: it builds subscribe frames and
turns every frame the exchange sends into :class:`~tickerd.model.Ticker` values.  Neither does
any I/O, so both are tested with real frames and no sockets, and the I/O loop in
:mod:`tickerd.feed` stays free of exchange-specific code.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from typing import ClassVar

import attrs

from tickerd.model import Ticker

UNIFIED_SYMBOL = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")
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


class Decoder(abc.ABC):
    """Per-connection protocol state.

    ``decode`` must never raise: a frame it cannot understand is junk, counted in
    :attr:`junk` and answered with ``[]``.  Anything other than tickers that the loop must
    act on (acks, rejections, frames to send, reconnect requests) is appended to
    :attr:`events`, which the loop drains after each frame.
    """

    exchange: ClassVar[str]

    def __init__(self, symbols: Iterable[str]) -> None:
        self.junk = 0
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
            return self._decode(frame)
        except Exception:  # noqa: BLE001 - any malformed frame is junk by definition
            self.junk += 1
            return []

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

    def junk_frame(self) -> list[Ticker]:
        """Count a frame that parsed but means nothing known; decoders return this."""
        self.junk += 1
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
    #: How many symbols one websocket connection may carry.
    max_symbols_per_connection: ClassVar[int]
    #: Seconds after which the exchange drops a connection; the loop rotates before it.
    max_lifetime: ClassVar[float | None] = None
    #: An application-level ping the loop must send, if the exchange wants one.
    keepalive: ClassVar[Keepalive | None] = None
    #: Minimum seconds between two frames the client sends (inbound rate limits).
    send_interval: ClassVar[float] = 0.0
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

    @property
    def provides(self) -> tuple[str, ...]:
        """The Ticker fields this exchange delivers."""
        return tuple(field for field in TICKER_FIELDS if field not in self.lacks)

    def check_symbol(self, symbol: str) -> None:
        """Raise ``ValueError`` naming the expected form if ``symbol`` is unusable here."""
        if len(symbol) > MAX_SYMBOL_LENGTH:
            shown = symbol[: MAX_SYMBOL_LENGTH // 4]
            raise ValueError(f"{shown!r}…: {len(symbol)} characters, at most {MAX_SYMBOL_LENGTH}")
        if not UNIFIED_SYMBOL.match(symbol):
            raise ValueError(f"{symbol!r} is not a unified symbol (expected BASE/QUOTE or BASE/QUOTE:SETTLE)")
        if self.spot_only and ":" in symbol:
            raise ValueError(f"{symbol!r}: the {self.name} adapter serves spot only (expected BASE/QUOTE)")

    def endpoint(self, url: str, symbol: str) -> str:
        """The websocket URL that serves ``symbol``; symbols are grouped by it.

        Most exchanges serve everything on one URL; exchanges with one URL per market
        category (spot, linear) override this.
        """
        return url

    def decoder(self, symbols: Iterable[str]) -> Decoder:
        """A fresh decoder for one connection carrying ``symbols``."""
        return self.decoder_class(symbols)


def split_unified(symbol: str) -> tuple[str, str, str | None]:
    """``BTC/USDT:USDT`` → ``("BTC", "USDT", "USDT")``; spot symbols have no settle."""
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    return base, quote, settle or None


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    """Split ``items`` into slices of at most ``size`` (per-message or per-connection limits)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def optional_float(value: object) -> float | None:
    """Exchanges send numbers as strings, numbers, ``""`` or ``null``; normalise to float."""
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]
