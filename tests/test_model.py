"""The Ticker contract that every layer (and the design notes) rely on, kept while its
``__init__`` is tickerd's own (``tickerd.model._fast_init``) rather than attrs'."""

from __future__ import annotations

import copy
import inspect
import pickle
from typing import Any

import attrs
import pytest

from tickerd.model import Ticker, _fast_init

#: The field names and defaults, in order: the positional form decoders use depends on it.
FIELDS = {
    "exchange": attrs.NOTHING,
    "symbol": attrs.NOTHING,
    "last": None,
    "bid": None,
    "ask": None,
    "bid_size": None,
    "ask_size": None,
    "volume_24h": None,
    "high_24h": None,
    "low_24h": None,
    "change_24h": None,
    "change_pct_24h": None,
    "exchange_ts": None,
    "received_ts": 0.0,
    "mark_price": None,
    "index_price": None,
    "funding_rate": None,
    "next_funding_ts": None,
    "open_interest": None,
    "sequence": None,
}


def full() -> Ticker:
    """A Ticker with a distinct value in every field."""
    values: list[Any] = [*(float(i) for i in range(1, 18)), 18]  # the last is the int sequence
    return Ticker("binance", "BTC/USDT", *values)


def test_an_attrs_frozen_slotted_class_with_the_same_fields() -> None:
    assert attrs.has(Ticker)
    assert {f.name: f.default for f in attrs.fields(Ticker)} == FIELDS
    assert list(FIELDS) == list(attrs.fields_dict(Ticker))
    assert "__dict__" not in dir(full())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        full().bid = 1.0  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del full().bid


def test_init_takes_the_fields_as_attrs_would() -> None:
    parameters = inspect.signature(Ticker).parameters
    assert [(p.name, p.default, p.kind) for p in parameters.values()] == [
        (
            name,
            inspect.Parameter.empty if default is attrs.NOTHING else default,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        for name, default in FIELDS.items()
    ]
    t = full()
    assert type(t) is Ticker
    assert attrs.astuple(t) == ("binance", "BTC/USDT", *(float(i) for i in range(1, 18)), 18)
    assert Ticker(**attrs.asdict(t)) == t
    bare = Ticker("kraken", "ETH/USD")
    assert attrs.astuple(bare) == (
        "kraken",
        "ETH/USD",
        *(d for d in FIELDS.values() if d is not attrs.NOTHING),
    )
    with pytest.raises(TypeError):
        Ticker("kraken")  # type: ignore[call-arg]


def test_evolve_asdict_eq_hash_copy_pickle() -> None:
    t = full()
    moved = attrs.evolve(t, bid=0.5)
    assert type(moved) is Ticker
    assert moved.bid == 0.5
    assert attrs.asdict(moved) == {**attrs.asdict(t), "bid": 0.5}
    assert t == full()
    assert t != moved
    assert hash(t) == hash(full())
    assert copy.copy(t) == t
    assert copy.deepcopy(t) == t
    assert pickle.loads(pickle.dumps(t)) == t
    assert repr(t).startswith("Ticker(exchange='binance', symbol='BTC/USDT', last=1.0")


def test_fast_init_refuses_fields_it_would_not_honour() -> None:
    with pytest.raises(TypeError, match="plain fields only"):

        @_fast_init
        @attrs.frozen(slots=True, weakref_slot=False)
        class Validated:
            x: int = attrs.field(validator=attrs.validators.instance_of(int))

    with pytest.raises(TypeError, match="plain fields only"):

        @_fast_init
        @attrs.frozen(slots=True, weakref_slot=False)
        class Factory:
            x: list[int] = attrs.Factory(list)

    with pytest.raises(TypeError, match="__attrs_post_init__"):

        @_fast_init
        @attrs.frozen(slots=True, weakref_slot=False)
        class PostInit:
            x: int

            def __attrs_post_init__(self) -> None:
                pass
