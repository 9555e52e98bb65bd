"""The one backoff policy: exponential from ``first``, capped, with equal jitter."""

from __future__ import annotations

import random

import attrs
import pytest

from tickerd.backoff import Backoff
from tickerd.config import FeedSettings


def test_without_jitter_the_delays_double_exactly_up_to_the_cap() -> None:
    policy = Backoff(first=0.05, cap=2.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert policy.delay(10_000) == 2.0  # no overflow however long the outage
    assert policy.delay(0) == 0.05  # "no failure yet" waits like the first one


def test_jitter_stays_within_the_upper_half_of_each_nominal_delay() -> None:
    policy = Backoff(first=1.0, cap=8.0)
    rng = random.Random(7)
    for failures, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (60, 8.0)]:
        delays = [policy.delay(failures, rng) for _ in range(200)]
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert max(delays) - min(delays) > nominal / 4  # spread out, not lockstep


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = Backoff(first=1.0, cap=60.0)
    first = [policy.delay(n, random.Random(3)) for n in range(1, 8)]
    assert first == [policy.delay(n, random.Random(3)) for n in range(1, 8)]


def test_policy_is_a_frozen_value_built_from_the_feed_settings() -> None:
    policy = FeedSettings(reconnect_delay=0.5, max_reconnect_delay=30.0).backoff
    assert policy == Backoff(first=0.5, cap=30.0, jitter=True)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.cap = 1.0  # type: ignore[misc]
