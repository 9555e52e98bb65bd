"""The shared sanity rule (tickerd/exchanges/base.py): one rule for every decoder.

The per-exchange tests (tests/test_<exchange>.py) check that each adapter applies it to its
frames and which fields its frames must carry; this file checks the rule itself, and that
its fast spelling (``Decoder.flaw``) agrees with the table of kinds (``PRICES``, ``AMOUNTS``,
``RATES``) a new field is added to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import pytest

from tickerd import snapshots
from tickerd.exchanges.base import AMOUNTS, DERIVATIVE_FIELDS, PRICES, RATES, TICKER_FIELDS, Decoder, problem
from tickerd.model import Ticker

GOOD = Ticker(
    exchange="test",
    symbol="BTC/USD",
    last=100.0,
    bid=99.0,
    ask=101.0,
    bid_size=1.0,
    ask_size=2.0,
    volume_24h=1000.0,
    high_24h=110.0,
    low_24h=90.0,
    change_24h=-3.0,
    change_pct_24h=-2.9,
)
NOT_FINITE = (math.nan, math.inf, -math.inf)


class _Frames(Decoder):
    """A decoder whose frames are the tickers themselves (or an exception to raise)."""

    exchange = "test"

    def __init__(self) -> None:
        super().__init__(["BTC/USD"])
        self.next: list[Ticker] | Exception = []

    def _decode(self, frame: str | bytes) -> list[Ticker]:
        if isinstance(self.next, Exception):
            raise self.next
        return self.next

    def _subscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return []

    def _unsubscribe_frames(self, symbols: Sequence[str]) -> list[str]:
        return []


def with_field(field: str, value: float) -> Ticker:
    """:data:`GOOD` with one numeric field changed."""
    changes: dict[str, object] = {field: value}
    return attrs.evolve(GOOD, **changes)  # type: ignore[arg-type]


def decoded(*tickers: Ticker) -> tuple[list[Ticker], _Frames]:
    decoder = _Frames()
    decoder.next = list(tickers)
    return decoder.decode("frame"), decoder


@pytest.mark.parametrize("field", PRICES)
@pytest.mark.parametrize("value", [0.0, -0.0, -1.0, *NOT_FINITE])
def test_a_price_that_is_not_positive_and_finite_makes_the_frame_junk(field: str, value: float) -> None:
    tickers, decoder = decoded(GOOD, with_field(field, value))
    assert tickers == [] and decoder.junk == 1  # the whole frame, its good ticker too
    assert decoder.junk_reason == f"BTC/USD: {field} {value!r} is not a valid price"


@pytest.mark.parametrize("field", AMOUNTS)
@pytest.mark.parametrize("value", [-1e-9, *NOT_FINITE])
def test_an_amount_that_is_negative_or_not_finite_makes_the_frame_junk(field: str, value: float) -> None:
    tickers, decoder = decoded(with_field(field, value))
    assert tickers == [] and decoder.junk == 1
    assert decoder.junk_reason == f"BTC/USD: {field} {value!r} is not a valid amount"


@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_rate_that_is_not_finite_makes_the_frame_junk(value: float) -> None:
    tickers, decoder = decoded(with_field("funding_rate", value))
    assert tickers == [] and decoder.junk == 1
    assert decoder.junk_reason == f"BTC/USD: funding_rate {value!r} is not a valid rate"


def test_a_negative_funding_rate_and_zero_open_interest_pass() -> None:
    """Shorts pay longs when the rate is negative; a market nobody holds has no open interest."""
    perpetual = attrs.evolve(
        GOOD,
        symbol="BTC/USD:BTC",
        mark_price=100.5,
        index_price=100.4,
        funding_rate=-0.00375,
        open_interest=0.0,
    )
    tickers, decoder = decoded(perpetual)
    assert tickers == [perpetual] and decoder.junk == 0


@pytest.mark.parametrize("field", AMOUNTS)
def test_an_amount_may_be_zero(field: str) -> None:
    ticker = with_field(field, 0.0)
    tickers, decoder = decoded(ticker)
    assert tickers == [ticker] and decoder.junk == 0


def test_absent_fields_and_the_unchecked_ones_pass() -> None:
    """Whether a field must be present is the adapter's business; changes may be negative."""
    bare = Ticker(exchange="test", symbol="BTC/USD", change_24h=-5.0, change_pct_24h=-math.inf)
    tickers, decoder = decoded(bare)
    assert tickers == [bare] and decoder.junk == 0


def test_the_kinds_cover_the_numeric_fields_and_the_fast_check_agrees_with_them() -> None:
    """A field in PRICES, AMOUNTS or RATES must be checked by ``Decoder.flaw`` as well."""
    kinds = {*PRICES, *AMOUNTS, *RATES}
    assert kinds <= {*TICKER_FIELDS, *DERIVATIVE_FIELDS}
    for field in kinds:
        insane = with_field(field, math.nan)
        assert problem(insane) is not None
        assert _Frames().flaw(insane) is not None, f"Decoder.flaw does not check {field}"


def test_a_crossed_book_is_counted_and_passes() -> None:
    crossed = attrs.evolve(GOOD, bid=102.0, ask=101.0)
    tickers, decoder = decoded(GOOD, crossed, crossed)
    assert tickers == [GOOD, crossed, crossed]
    assert (decoder.crossed, decoder.junk) == (2, 0)
    assert decoded(attrs.evolve(GOOD, bid=101.0))[1].crossed == 0  # a locked book is not crossed


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (KeyError("b"), "missing field 'b'"),
        (
            TypeError("float() argument must be a string or a real number, not 'NoneType'"),
            "TypeError: float()",
        ),
        (ValueError("could not convert string to float: ''"), "ValueError: could not convert"),
    ],
)
def test_a_frame_the_decoder_fails_on_is_junk_with_the_reason(error: Exception, reason: str) -> None:
    decoder = _Frames()
    decoder.next = error
    assert decoder.decode("frame") == [] and decoder.junk == 1
    assert decoder.junk_reason.startswith(reason)


def test_a_long_reason_is_cut() -> None:
    decoder = _Frames()
    decoder.next = ValueError("x" * 10_000)  # float() quotes the whole offending string
    decoder.decode("frame")
    assert 0 < len(decoder.junk_reason) <= 200


def test_a_health_record_without_the_crossed_count_still_reads() -> None:
    """Records written before ``crossed`` existed (an older daemon's) read as 0."""
    record = snapshots.ExchangeRecord(
        state="connected",
        connections=1,
        reconnects=0,
        last_error=None,
        last_error_ts=None,
        rejected={},
        stale=(),
        symbols=("BTC/USD",),
        feeds=1,
        frames=10,
        junk=0,
        last_tick={},
        exchange="kraken",
        time=1.0,
        crossed=3,
    )
    stored = snapshots.converter.unstructure(record)
    assert stored["crossed"] == 3
    del stored["crossed"]
    older = snapshots.converter.structure(stored, snapshots.ExchangeRecord)
    assert older == attrs.evolve(record, crossed=0)
