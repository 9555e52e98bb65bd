"""One reconnect/retry policy for everything that waits before trying again.

Feeds (websocket reconnects), the database source (PostgreSQL outages) and the writer (Redis
outages) all back off the same way: exponentially from ``first`` up to ``cap``, with "equal
jitter" (half the delay fixed, half random) so that many clients that failed together do not
retry in lockstep, while each still waits a guaranteed minimum.
"""

from __future__ import annotations

import math
import random

import attrs


@attrs.frozen
class Backoff:
    """Exponential backoff, capped, with equal jitter (``jitter=False``: exact doubling)."""

    first: float
    cap: float
    jitter: bool = True

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure (1 for the first)."""
        exponent = min(max(failures, 1) - 1, 32)
        delay = min(self.cap, self.first * math.pow(2, exponent))
        if not self.jitter:
            return delay
        return delay / 2 + (rng or random).uniform(0, delay / 2)
