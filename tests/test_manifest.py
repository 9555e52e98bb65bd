"""The exchange manifest: each adapter names its fake and sample symbols, and the registry stays lazy."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tickerd import exchanges
from tickerd.exchanges.base import Market, market, split_unified
from tickerd.testing import FakeExchange, fake_for


@pytest.mark.parametrize("name", exchanges.names())
def test_the_adapter_names_its_own_fake(name: str) -> None:
    fake = fake_for(name)
    assert issubclass(fake, FakeExchange)
    assert fake.name == name


@pytest.mark.parametrize("name", exchanges.names())
def test_sample_symbols_are_served_and_cover_perpetuals_where_the_exchange_has_them(name: str) -> None:
    adapter = exchanges.get(name)
    assert adapter.sample_symbols
    for symbol in adapter.sample_symbols:
        adapter.check_symbol(symbol)  # raises if the adapter would refuse it
    assert adapter.spot_only or any(":" in symbol for symbol in adapter.sample_symbols)


def _loaded_after(code: str) -> set[str]:
    """The tickerd modules a fresh interpreter has loaded after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(m for m in sys.modules if m.startswith('tickerd')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_registry_loads_only_the_adapters_it_is_asked_for() -> None:
    loaded = _loaded_after("import tickerd.exchanges as e\ne.names()\ne.get('okx')")
    assert "tickerd.exchanges.okx" in loaded
    assert not {m for m in loaded if m.startswith("tickerd.exchanges.")} - {
        "tickerd.exchanges.base",
        "tickerd.exchanges.okx",
    }
    assert not {m for m in loaded if m.startswith("tickerd.testing")}  # the daemon never loads test code


@pytest.mark.parametrize(
    ("symbol", "parts"),
    [
        ("BTC/USDT", Market("BTC", "USDT")),
        ("BTC/USDT:USDT", Market("BTC", "USDT", "USDT")),
        ("BTC/USD:BTC", Market("BTC", "USD", "BTC")),
        ("BTC/USDT:USDT-261225", Market("BTC", "USDT", "USDT", "261225")),
    ],
)
def test_unified_symbols_of_every_market_kind_parse_and_print_back(symbol: str, parts: Market) -> None:
    assert market(symbol) == parts and parts.symbol == symbol
    assert split_unified(symbol) == (parts.base, parts.quote, parts.settle)
    assert (parts.spot, parts.perpetual, parts.inverse) == (
        parts.settle is None,
        parts.settle is not None and parts.expiry is None,
        parts.settle == "BTC",
    )


@pytest.mark.parametrize(
    ("symbol", "error"),
    [
        (
            "BTC-USDT",
            "is not a unified symbol (expected BASE/QUOTE, BASE/QUOTE:SETTLE or BASE/QUOTE:SETTLE-YYMMDD)",
        ),
        ("BTC/USDT-261225", "is not a unified symbol"),  # a future needs its settle asset
        ("BTC/USDT:USDT-2612", "is not a unified symbol"),
        ("BTC/USDT:USDT-261332", "expiry '261332' is not a date (expected YYMMDD)"),
    ],
)
def test_malformed_symbols_are_refused_naming_the_forms(symbol: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        market(symbol)


@pytest.mark.parametrize("name", [n for n in exchanges.names() if not exchanges.get(n).dated_futures])
def test_dated_futures_are_refused_where_the_adapter_serves_none(name: str) -> None:
    with pytest.raises(ValueError, match=r"serves no dated futures|serves spot"):
        exchanges.get(name).check_symbol("BTC/USDT:USDT-261225")


@pytest.mark.parametrize("name", exchanges.names())
def test_only_spot_only_adapters_make_decoders_that_skip_the_derivative_checks(name: str) -> None:
    """A decoder that says ``derivatives = False`` lets the derivative fields through unchecked:
    only an adapter that serves spot alone (so never sets them) may make one."""
    adapter = exchanges.get(name)
    for group in adapter.groups:
        decoder = adapter.decoder([], group, adapter.merged_state())
        assert decoder.derivatives or adapter.spot_only
