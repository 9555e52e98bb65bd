"""The exchange manifest: each adapter names its fake and sample symbols, and the registry stays lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tickerd import exchanges
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
