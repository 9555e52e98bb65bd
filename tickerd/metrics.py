"""Prometheus metrics and the ``/healthz`` verdict of a running daemon.

Nothing is counted for Prometheus on the hot path: the counters the feeds and the writer
keep anyway (frames, junk, tickers written, batches, coalesced updates, reconnects) are read
by a custom collector when Prometheus scrapes.  The two latency histograms are observed once
per written batch, never per frame.  :mod:`tickerd.web` serves the registry at ``/metrics``
and :meth:`Metrics.healthz` at ``/healthz``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tickerd.daemon import TickerDaemon
from tickerd.health import EXCHANGE_STATES, HEALTHY, LEVELS, assess_daemon
from tickerd.model import Ticker
from tickerd.snapshots import ExchangeSnapshot, FleetSnapshot
from tickerd.writer import Written

#: Latency buckets in seconds: sub-millisecond pipelines up to multi-second Redis stalls.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


#: One number read from an exchange's health snapshot.
_Reading = Callable[[ExchangeSnapshot], float]


class _DaemonCollector(Collector):
    """Reads the daemon's own counters at scrape time."""

    def __init__(self, daemon: TickerDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        health = self.daemon.health()
        per_exchange: dict[str, tuple[str, _Reading]] = {
            "frames_received": ("Websocket frames received", lambda r: r.frames),
            "frames_decoded": (
                "Frames the decoder understood (tickers and control frames)",
                lambda r: r.frames - r.junk,
            ),
            "frames_junk": ("Frames the decoder could not use", lambda r: r.junk),
            "reconnects": ("Connection failures followed by a reconnect", lambda r: r.reconnects),
            "crossed_books": (
                "Tickers whose best bid was above their best ask (written all the same)",
                lambda r: r.crossed,
            ),
        }
        for name, (help_text, value) in per_exchange.items():
            counter = CounterMetricFamily(f"tickerd_{name}", help_text, labels=["exchange"])
            for exchange, record in sorted(health.exchanges.items()):
                counter.add_metric([exchange], value(record))
            yield counter
        gauges: dict[str, tuple[str, _Reading]] = {
            "symbols": ("Subscribed symbols", lambda r: len(r.symbols)),
            "stale_symbols": ("Subscribed symbols without a recent update", lambda r: len(r.stale)),
            "waiting_symbols": ("Subscribed symbols without any update yet", lambda r: len(r.waiting)),
            "rejected_symbols": ("Symbols the exchange refused", lambda r: len(r.rejected)),
            "connections": ("Open websocket connections", lambda r: r.connections),
        }
        for name, (help_text, value) in gauges.items():
            gauge = GaugeMetricFamily(f"tickerd_{name}", help_text, labels=["exchange"])
            for exchange, record in sorted(health.exchanges.items()):
                gauge.add_metric([exchange], value(record))
            yield gauge
        # One series per (exchange, state), 1 for the state it is in: a state is a label, so
        # dashboards and alerts select it by name, and each state's series exists from the start.
        state = GaugeMetricFamily(
            "tickerd_exchange_state",
            "1 for the state the exchange is in, 0 for the others",
            labels=["exchange", "state"],
        )
        for exchange, record in sorted(health.exchanges.items()):
            for name in EXCHANGE_STATES:
                state.add_metric([exchange, name], int(record.state == name))
        yield state
        writer = health.writer
        yield CounterMetricFamily("tickerd_tickers_written", "Tickers written to Redis", value=writer.written)
        yield CounterMetricFamily("tickerd_batches", "Pipelines written to Redis", value=writer.batches)
        yield CounterMetricFamily(
            "tickerd_coalesced_updates",
            "Updates replaced by a newer one before they were written",
            value=writer.coalesced,
        )
        yield CounterMetricFamily(
            "tickerd_writes_rejected",
            "Tickers not written because Redis held a value as new (fleet mode: another instance's)",
            value=writer.rejected,
        )
        yield GaugeMetricFamily(
            "tickerd_redis_up", "1 while Redis accepts writes", value=int(writer.redis_up)
        )
        if health.fleet is not None:
            yield from _fleet_metrics(health.fleet)


def _fleet_metrics(fleet: FleetSnapshot) -> Iterator[Metric]:
    """A fleet member's view: how many members own symbols, what it owns and hands over."""
    yield GaugeMetricFamily(
        "tickerd_fleet_members",
        "Members of the fleet that own symbols, as this one sees it",
        value=len(fleet.members),
    )
    yield GaugeMetricFamily(
        "tickerd_fleet_store_up", "1 while Redis answers the fleet membership", value=int(fleet.store_up)
    )
    yield CounterMetricFamily(
        "tickerd_fleet_record_writes",
        "Writes of this member's record (joins, changes, renewals)",
        value=fleet.record_writes,
    )
    yield CounterMetricFamily(
        "tickerd_fleet_record_reads", "Reads of the fleet's member records", value=fleet.record_reads
    )
    handovers = CounterMetricFamily(
        "tickerd_fleet_handovers",
        "Symbols let go to other members: once they delivered them, or when the grace ran out",
        labels=["after"],
    )
    handovers.add_metric(["delivered"], fleet.handed_over)
    handovers.add_metric(["grace"], fleet.handed_over_late)
    yield handovers
    for name, help_text, counts in (
        ("owned_symbols", "Symbols this member owns by the rendezvous", fleet.owned),
        (
            "handover_symbols",
            "Symbols this member lost and keeps until their new owners deliver them",
            fleet.handover,
        ),
    ):
        gauge = GaugeMetricFamily(f"tickerd_fleet_{name}", help_text, labels=["exchange"])
        for exchange, count in sorted(counts.items()):
            gauge.add_metric([exchange], count)
        yield gauge


class Metrics:
    """The registry of one daemon: its collector and the per-batch latency histograms."""

    def __init__(self, daemon: TickerDaemon) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_DaemonCollector(daemon))
        self.redis_write = Histogram(
            "tickerd_redis_write_seconds",
            "Time to write one batch pipeline to Redis",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.frame_to_redis = Histogram(
            "tickerd_frame_to_redis_seconds",
            "From a frame's arrival to its ticker being in Redis (one ticker sampled per batch)",
            buckets=BUCKETS,
            registry=self.registry,
        )
        daemon.writer.batch_written.connect(self._batch_written)

    def _batch_written(self, written: Written) -> None:
        batch, seconds = written
        self.redis_write.observe(seconds)
        sample = next(iter(batch.values()))
        if isinstance(sample, Ticker) and sample.received_ts:  # not a symbol's removal
            self.frame_to_redis.observe(max(0.0, time.time() - sample.received_ts))

    def healthz(self) -> tuple[int, str]:
        """``200`` and ``ok`` when healthy, else ``503`` and why (same rule as ``status``)."""
        level, reasons = assess_daemon(self.daemon.health())
        if level == HEALTHY:
            return 200, "ok\n"
        return 503, f"{LEVELS[level]}: {'; '.join(reasons)}\n"
