"""The one value type every layer shares: the latest ticker of one (exchange, symbol)."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

_C = TypeVar("_C", bound=type)


def _fast_init(cls: _C) -> _C:
    """Replace the ``__init__`` attrs generated for the frozen slotted ``cls`` with one that
    stores the fields as a plain slotted class does.

    attrs' frozen ``__init__`` sets each field through ``object.__setattr__(self, name, value)``,
    a call that looks the slot up by name: ~45 ns a field, 0.9 µs for a 14-field Ticker, the
    largest single cost of decoding a frame.  The replacement turns the new instance into an
    instance of a mutable twin of ``cls`` (the same slots, so the same memory layout, which is
    what Python requires of a ``__class__`` assignment), stores every field with plain attribute
    assignment (~4 ns each) and turns it back: ~0.4 µs for 14 fields, ~0.45 µs with 6 more
    defaulted fields where attrs' costs 1.15 µs (setting each slot through its member descriptor
    instead costs 0.66 and 1.0 µs; timeit, this machine;
    ``bench/decode.py`` prints the current figure).  No one else ever sees the twin: the
    instance is not yet shared while its ``__init__`` runs, and plain slot stores cannot fail
    half-way.  Everything else is attrs' own: the frozen ``__setattr__``, ``evolve``,
    ``asdict``, eq, hash, repr, pickling; mypy reads the signature from the fields as before.

    ``cls`` must have no ``__weakref__`` slot (``weakref_slot=False``): attrs puts it after the
    fields, where CPython's layout comparison does not accept it.  The ``__init__`` is generated
    from ``attrs.fields(cls)``, so a field added to the class needs no edit here; it takes the
    same parameters, in the same order, with the same defaults.  Only plain fields are
    supported: a validator, converter, factory, alias, ``init=False``, keyword-only field or
    ``__attrs_post_init__`` raises at import rather than being skipped silently.
    """
    if hasattr(cls, "__attrs_post_init__"):
        raise TypeError(f"{cls.__name__}: _fast_init does not run __attrs_post_init__")
    twin = type(f"_Mutable{cls.__name__}", (), {"__slots__": cls.__dict__["__slots__"]})
    namespace: dict[str, Any] = {"_cls": cls, "_twin": twin, "_setattr": object.__setattr__}
    params: list[str] = []
    for field in attrs.fields(cls):
        plain = (
            field.init
            and field.alias == field.name
            and not (field.validator or field.converter or field.kw_only)
        )
        if not plain or isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}.{field.name}: _fast_init supports plain fields only")
        if field.default is attrs.NOTHING:
            params.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            params.append(f"{field.name}=_default_{field.name}")
    stores = "".join(f"    self.{field.name} = {field.name}\n" for field in attrs.fields(cls))
    source = (
        f"def __init__(self, {', '.join(params)}):\n"
        "    _setattr(self, '__class__', _twin)\n"
        f"{stores}"
        "    self.__class__ = _cls\n"
    )
    exec(compile(source, f"<{cls.__qualname__} fast init>", "exec"), namespace)
    generated = cls.__dict__["__init__"]
    init = namespace["__init__"]
    init.__qualname__ = generated.__qualname__
    init.__module__ = cls.__module__
    init.__annotations__ = generated.__annotations__
    cls.__init__ = init  # type: ignore[misc]  # mypy: a method assigned on an instance
    return cls


@_fast_init
@attrs.frozen(slots=True, weakref_slot=False)
class Ticker:
    """A normalised ticker.

    Numbers are floats, or ``None`` where the exchange does not send the field (some feeds
    carry no sizes, some no 24 h statistics).  ``exchange_ts``, ``received_ts`` and
    ``next_funding_ts`` are epoch seconds.  The symbol is unified: ``BASE/QUOTE`` for spot,
    ``BASE/QUOTE:SETTLE`` for perpetuals, ``BASE/QUOTE:SETTLE-YYMMDD`` for dated futures.

    The derivative fields come after ``received_ts`` so that the decoders' positional calls of
    the spot fields stay as they are; spot markets never have them.  ``funding_rate`` is the
    rate of one funding period as the venue states it (0.0001 = 0.01 %), ``open_interest`` is
    in the unit the venue reports (the README's exchange table names it).  ``sequence`` is the
    venue's own update id or sequence number, where it sends one: the order in which the venue
    produced the updates of this symbol.
    """

    exchange: str
    symbol: str
    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    volume_24h: float | None = None
    high_24h: float | None = None
    low_24h: float | None = None
    change_24h: float | None = None
    change_pct_24h: float | None = None
    exchange_ts: float | None = None
    received_ts: float = 0.0
    mark_price: float | None = None
    index_price: float | None = None
    funding_rate: float | None = None
    next_funding_ts: float | None = None
    open_interest: float | None = None
    sequence: int | None = None


@attrs.frozen(slots=True)
class Removal:
    """``symbol`` of ``exchange`` left the desired set: its stored value is to be deleted.

    It travels to the writer through the tickers' channel, so it lands behind the symbol's
    tickers already queued and replaces them, as a newer ticker would.
    """

    exchange: str
    symbol: str
