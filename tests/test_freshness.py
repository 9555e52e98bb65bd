"""Staleness bookkeeping (:mod:`tickerd.freshness`): the rules, and that a check reads only the
oldest entries (counted, not timed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs
import pytest

from tickerd.freshness import LastSeen, Staleness, Verdict


@attrs.define(eq=False)
class Conn:
    """A connection as the resubscribe rule sees it."""

    feed_id: int
    symbols: set[str]
    live: set[object] = attrs.field(factory=lambda: {object()})
    frame_count: int = 0
    last_ticker_at: float | None = None
    resubscribed: int = 0

    def resubscribe(self) -> None:
        self.resubscribed += 1


class CountingView(Mapping[str, float]):
    """A live view of a mapping that counts the keys iteration hands out."""

    def __init__(self, data: Mapping[str, float]) -> None:
        self.data = data
        self.read = 0

    def __getitem__(self, key: str) -> float:
        return self.data[key]

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        for key in self.data:
            self.read += 1
            yield key


def judge(staleness: Staleness, now: float, stale: set[str], conns: list[Conn] | None = None) -> Verdict:
    """One check, applied to ``stale`` as the runner applies it to the exchange's health."""
    verdict = staleness.check(now, conns or [], stale, set())
    stale.difference_update(verdict.fresh + verdict.left)
    stale.update(verdict.stale)
    return verdict


def test_last_seen_keeps_update_order_and_reports_first_tickers() -> None:
    seen = LastSeen()
    assert seen.taken([("k", "A"), ("k", "B"), ("b", "A")], 1.0)
    assert not seen.taken([("k", "A")], 2.0)  # known: no first ticker
    assert list(seen.of("k").items()) == [("B", 1.0), ("A", 2.0)]  # A moved to the end
    assert ("k", "A") in seen and ("k", "C") not in seen and "k" not in seen
    seen.forget(("k", "A"))
    seen.forget(("b", "A"))
    assert ("k", "A") not in seen and dict(seen.of("k")) == {"B": 1.0} and not seen.of("b")
    assert seen.taken([("k", "A")], 3.0)  # forgotten, so first again


def test_a_waiting_symbol_is_stale_from_its_subscription_and_fresh_again_once_it_ticks() -> None:
    seen = LastSeen()
    staleness = Staleness("k", seen, stale_after=10.0)
    stale: set[str] = set()
    staleness.watch("A", 0.0)
    staleness.watch("B", 5.0)
    assert judge(staleness, 9.0, stale).stale == []
    assert judge(staleness, 10.0, stale).stale == ["A"]
    assert judge(staleness, 12.0, stale).stale == []  # already stale: not again
    seen.taken([("k", "A"), ("k", "B")], 13.0)
    verdict = judge(staleness, 14.0, stale)
    assert verdict.fresh == ["A"] and verdict.stale == [] and stale == set()
    assert judge(staleness, 23.0, stale).stale == ["A", "B"]  # 10 s after their last batch


def test_a_ticked_symbol_is_stale_after_its_last_batch_and_fresh_again() -> None:
    seen = LastSeen()
    staleness = Staleness("k", seen, stale_after=10.0)
    stale: set[str] = set()
    for symbol in ("A", "B"):
        staleness.watch(symbol, 0.0)
    seen.taken([("k", "A"), ("k", "B")], 1.0)
    seen.taken([("k", "B")], 8.0)
    assert judge(staleness, 11.0, stale).stale == ["A"]
    seen.taken([("k", "A")], 12.0)
    verdict = judge(staleness, 13.0, stale)
    assert (verdict.stale, verdict.fresh) == ([], ["A"])


def test_a_resubscribed_symbol_is_judged_from_its_new_subscription() -> None:
    """A restarted exchange's runner sees the writer's old times: not stale before its own
    subscription is ``stale_after`` old."""
    seen = LastSeen()
    seen.taken([("k", "A")], 0.0)
    staleness = Staleness("k", seen, stale_after=10.0)
    stale: set[str] = set()
    staleness.watch("A", 50.0)
    assert judge(staleness, 55.0, stale).stale == []
    assert judge(staleness, 60.0, stale).stale == ["A"]


def test_removed_symbols_leave_without_a_fresh_line_and_rejected_ones_are_never_stale() -> None:
    seen = LastSeen()
    staleness = Staleness("k", seen, stale_after=10.0)
    stale: set[str] = set()
    for symbol in ("A", "B", "R"):
        staleness.watch(symbol, 0.0)
    verdict = staleness.check(10.0, [], stale, {"R"})
    assert verdict.stale == ["A", "B"]
    stale.update(verdict.stale)
    staleness.unwatch("A")
    verdict = staleness.check(11.0, [], stale, {"B", "R"})
    assert (verdict.left, verdict.fresh, verdict.stale) == (["A", "B"], [], [])
    # Accepted at last: judged again stale_after after the check that last found it refused.
    stale.clear()
    assert staleness.check(15.0, [], stale, set()).stale == []
    assert staleness.check(20.0, [], stale, set()).stale == ["R"]  # refused at 10 s
    assert staleness.check(21.0, [], stale, set()).stale == ["B"]  # refused at 11 s


def test_a_check_reads_only_the_oldest_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = LastSeen()
    staleness = Staleness("k", seen, stale_after=10.0)
    stale: set[str] = set()
    symbols = [f"S{i}" for i in range(10_000)]
    for symbol in symbols:
        staleness.watch(symbol, 0.0)
    seen.taken([("k", s) for s in symbols], 1.0)
    judge(staleness, 2.0, stale)
    judge(staleness, 11.0, stale)  # the waiting baselines are settled, once
    assert stale == set(symbols)
    seen.taken([("k", s) for s in symbols], 12.0)
    judge(staleness, 13.0, stale)
    assert stale == set()
    counted = CountingView(seen.of("k"))
    monkeypatch.setattr(seen, "of", lambda exchange: counted)
    for now in (14.0, 15.0, 16.0):
        seen.taken([("k", "S5"), ("k", "S7")], now)  # two symbols move
        assert judge(staleness, now + 0.5, stale) == Verdict([], [], [], [])
    assert counted.read == 3  # one fresh entry per check: the front one
    counted.read = 0
    assert judge(staleness, 22.5, stale).stale == sorted(set(symbols) - {"S5", "S7"})
    assert counted.read == 9_999  # the stale ones, and the first fresh one


def test_a_connection_with_frames_but_no_ticker_resubscribes_once_per_stale_after() -> None:
    staleness = Staleness("k", LastSeen(), stale_after=10.0)
    stale: set[str] = set()
    ticking = Conn(1, {"A"})
    silent = Conn(2, {"B"})  # no frame at all: the watchdog's case
    idle = Conn(3, {"C"}, live=set())  # not connected
    quiet = Conn(4, {"D"})  # frames, no ticker
    refused = Conn(5, {"E"})  # every symbol refused
    conns = [ticking, silent, idle, quiet, refused]
    for now in range(0, 31):
        for conn in (ticking, idle, quiet, refused):
            conn.frame_count += 1
        ticking.last_ticker_at = float(now)
        verdict = staleness.check(float(now), conns, stale, {"E"})
        for due in verdict.resubscribe:
            due.resubscribe()
        if now == 15:
            quiet.last_ticker_at = 15.0  # its renewed subscription delivered
    # At 10 s, then 10 s after the ticker its renewed subscription brought (not at 20 s).
    assert [c.resubscribed for c in conns] == [0, 0, 0, 2, 0]
