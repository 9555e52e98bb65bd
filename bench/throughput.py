"""End-to-end throughput, latency and CPU: fake exchanges → a running tickerd → a real Redis.

    .venv/bin/python bench/throughput.py [--engine websockets --engine trio-websocket]
        [--python OTHER/.venv/bin/python --python .venv/bin/python]
        [--symbols 200] [--burst 200000] [--rate 5000] [--duration 10] [--profile DIR]
        [--sweep 1000,5000,20000,full]
        [--wide [--wide-layout 20x50] [--wide-rate 5000] [--wide-exchanges binance,bybit,okx]]
        [--idle [--idle-symbols 1000] [--idle-seconds 20] [--idle-exchange binance] [--clustered]]

Three kinds of process, so that the figures are the daemon's own: the fake exchanges
(:mod:`fake_market`: one trio server speaking Binance's, Bybit's and OKX's protocols, writing
pre-encoded frames straight to the sockets), the daemon (``python -m tickerd`` with a generated
config, one engine at a time, against the same fake and the same symbols), and this process,
which drives the fake and watches Redis.

Every frame carries the time the fake sent it (in the bid size) and a sequence number (in the
ask size), on every exchange, so the watcher measures frame-send → visible-in-Redis latency
from each published update (``ticker_updates:*``: the writer publishes after the ``HSET`` in
the same pipeline) and knows when the last frame of each symbol has arrived.

Phase sets (each one daemon per checkout and engine, after a warm-up burst; one table each):

* **default** (no set named): Binance, ``--symbols`` on one connection.

  * **burst**: ``--burst`` frames as fast as the socket takes them (the frames cycle through
    the symbols).  Frames/s end to end = frames / (first frame sent → last frame's value
    published).  Latency is sampled on 10 symbols (all 200 would make the watcher the
    bottleneck).  Every symbol's final value is then checked in the hash.
  * **rate**: ``--rate`` frames/s for ``--duration`` seconds (the fake sends what is due every
    millisecond), every update watched; RSS is sampled each second so a long run
    (``--duration 600``) shows whether memory grows.

* **sweep** (``--sweep``): the rate phase at each rate given (``full``: the burst), so CPU per
  frame and latency show as a curve over the rate, not one point.
* **wide** (``--wide``, issue 12 goal 2): ``--wide-layout`` connections × symbols per
  connection over several exchanges (20 × 50 over Binance, Bybit and OKX: 7, 7 and 6
  connections), ``--wide-rate`` frames/s in total for ``--duration`` seconds, spread evenly
  over the connections.  The layout is set with ``[exchanges.NAME] symbols_per_connection``.  A
  checkout without that key (before issue 12) gets the same layout through a shim that lowers
  its adapters' ``max_symbols_per_connection`` in the daemon's process (the key's only effect
  is that chunk size), and the run says so; the ``conns`` column counts the connections the
  fake saw subscribed, whichever way.
* **idle** (``--idle``, goal 3): ``--idle-symbols`` on one exchange, one update per symbol per
  second for ``--idle-seconds`` (at least 20), each symbol on its own phase of the second
  (frames spread evenly: the honest worst case, no two updates share a wake-up), over the
  connections the adapter's limit makes.  ``--clustered`` adds the variant where each second's
  updates come in one burst, labelled ``idle-clustered``.  ``cpu share`` is the figure to read
  (the target is 2 % of a core).

Every rate has a **harness floor**: the same pacing (at most 10 s) with the fake publishing
straight to Redis and no daemon: the latency the fake, Redis and the watcher add on their own.

**Checkouts** (``--python``, repeatable): the interpreter whose ``-m tickerd`` runs; default
this one.  Give an old checkout's venv and the current one to measure both back to back in one
run, against the same fakes (``daemon`` column: the checkout's directory name; the commit of
each is printed).

``to_decode`` (``dec``) is the part of the latency before the daemon decoded the frame (its
``received_ts``): the socket and the daemon waking up, as opposed to the writer.

CPU per frame is the daemon's user+system time over the phase divided by its frames; ``cpu
share`` is that time over the phase's wall time (1.00 = one core); peak RSS is the daemon's
``VmHWM`` after the phase.  Redis writes/s count ``PUBLISH`` calls (``INFO commandstats``; one
per written ticker).  ``lost``: symbols whose final value in the hash is not their last frame's.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from fake_market import PATHS, REDIS_URL, Key, Markets, run_fake

from tickerd.layout import RedisLayout

#: Symbols whose every update is watched during a full-speed burst.
SAMPLED = 10
#: The harness floor is a latency distribution, not a soak: it never runs longer than this.
FLOOR_SECONDS = 10.0
#: The idle phase's shortest run: CPU share over less would be mostly noise.
IDLE_MIN_SECONDS = 20.0


def symbols(count: int) -> list[str]:
    return [f"X{i:03d}/USDT" for i in range(count)]


# -- the daemon under test (its own process) --------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """A tickerd checkout, known by the interpreter that runs it."""

    python: str
    label: str
    commit: str
    #: Whether its config has ``[exchanges.NAME] symbols_per_connection``.
    layout_knob: bool

    def describe(self) -> str:
        knob = "" if self.layout_knob else " (no symbols_per_connection: wide layout through the limits shim)"
        return f"daemon {self.label}: {self.python} at {self.commit}{knob}"

    @classmethod
    def probe(cls, python: str, taken: set[str]) -> Checkout:
        """Ask ``python`` where its ``tickerd`` lives and what its config accepts."""
        python = os.path.abspath(python)  # not resolved: a venv's python is a symlink
        code = (
            "import attrs, pathlib, tickerd, tickerd.config as c; "
            "print(pathlib.Path(tickerd.__file__).resolve().parent.parent); "
            "print('symbols_per_connection' in attrs.fields_dict(c.ExchangeConfig))"
        )
        # From a neutral directory: ``-c`` and ``-m`` put the working directory first on
        # sys.path, and this checkout's ``tickerd`` would shadow the other's.
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()
        ).stdout.split()
        root, knob = Path(out[0]), out[1] == "True"
        git = ["git", "-C", str(root)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        if subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout:
            commit += "+changes"
        label = root.name
        while label in taken:
            label += "'"
        return cls(python, label, commit or "?", knob)


#: ``python -m tickerd`` for a checkout without ``symbols_per_connection``: the same layout, by
#: lowering its adapters' ``max_symbols_per_connection`` (the only thing the key changes: the
#: runner's chunk size) in the daemon's process before it starts.  argv[1]: exchange → limit.
_LIMITS_SHIM = """
import json, sys
from tickerd import exchanges
for name, limit in json.loads(sys.argv.pop(1)).items():
    type(exchanges.get(name)).max_symbols_per_connection = limit
from tickerd.commands.main import main
sys.exit(main())
"""


class Daemon:
    """``python -m tickerd`` with one engine, pointed at the fake; /proc figures for it."""

    def __init__(
        self,
        checkout: Checkout,
        engine: str,
        port: int,
        markets: Markets,
        per_connection: dict[str, int],
        prefix: str,
        workdir: Path,
    ) -> None:
        text = (
            f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{prefix}"\n'
            f'[log]\nlevel = "WARNING"\n'
            f'[feed]\nengine = "{engine}"\n'
        )
        for exchange, names in markets.items():
            text += (
                f'[exchanges.{exchange}]\nurl = "ws://127.0.0.1:{port}{PATHS[exchange]}"\n'
                f"symbols = {orjson.dumps(names).decode()}\n"
            )
            if exchange in per_connection and checkout.layout_knob:
                text += f"symbols_per_connection = {per_connection[exchange]}\n"
        config = workdir / f"{checkout.label}-{engine}.toml"
        config.write_text(text)
        if per_connection and not checkout.layout_knob:
            command = ["-c", _LIMITS_SHIM, orjson.dumps(per_connection).decode()]
        else:
            command = ["-m", "tickerd"]
        self.process = subprocess.Popen(  # in workdir: see Checkout.probe
            [checkout.python, *command, "--config", str(config)], cwd=workdir
        )
        self.pid = self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _status(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB → MiB
        raise KeyError(key)

    def rss(self) -> float:
        return self._status("VmRSS")

    def peak_rss(self) -> float:
        return self._status("VmHWM")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=15)


# -- watching Redis (this process) ------------------------------------------------------------


class Watcher:
    """Subscribes to update channels; turns each published record into a latency sample."""

    def __init__(
        self, client: redis.Redis, prefix: str, exchanges: list[str], keys: list[Key] | None
    ) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.layout = layout = RedisLayout(prefix)
        self.keys = None if keys is None else set(keys)
        if keys is None:
            self.pubsub.psubscribe(*(layout.updates_pattern(exchange) for exchange in exchanges))
        else:
            self.pubsub.subscribe(*(layout.updates(exchange, name) for exchange, name in keys))
        self.latencies: list[float] = []
        #: The part of each latency spent before the daemon decoded the frame (its
        #: ``received_ts``): the socket and the daemon's wake-up, as opposed to the writer.
        self.to_decode: list[float] = []

    def watch(
        self, fake: multiprocessing.connection.Connection, daemon: Daemon | None, timeout: float
    ) -> tuple[dict[str, Any], float, list[float]]:
        """Collect samples (and the daemon's RSS each second) until the fake reports the
        phase done and every watched symbol's last frame has arrived.

        Returns the fake's report, when the last of those arrived (or the phase's nominal
        time ended, if later), and the RSS samples.
        """
        result: dict[str, Any] | None = None
        newest: dict[Key, int] = {}
        #: When each symbol's newest value arrived.
        arrived: dict[Key, float] = {}
        pending: dict[Key, int] = {}
        rss: list[float] = []
        next_rss = deadline = time.time()
        deadline += timeout
        while time.time() < deadline:
            if result is None and fake.poll(0):
                result = fake.recv()
                pending = {
                    key: seq
                    for key, seq in result["last"]
                    if (self.keys is None or key in self.keys) and newest.get(key, 0) < seq
                }
            if result is not None and not pending:
                watched = [key for key, _ in result["last"] if self.keys is None or key in self.keys]
                # A paced phase lasts its nominal time at least: the last second of a clustered
                # one is its burst and then the quiet rest of the second, also paid for.
                done = max(max(arrived[key] for key in watched), result["first_sent"] + result["seconds"])
                if time.time() >= done:
                    return result, done, rss
            if daemon is not None and time.time() >= next_rss:
                rss.append(daemon.rss())
                next_rss += 1.0
            message = self.pubsub.get_message(timeout=0.05)
            if message is None:
                continue
            now = time.time()
            record = self.layout.decode_ticker(message["data"])
            self.latencies.append(now - record["bid_size"])
            self.to_decode.append(record["received_ts"] - record["bid_size"])
            key, seq = (record["exchange"], record["symbol"]), int(record["ask_size"])
            if seq > newest.get(key, 0):
                newest[key], arrived[key] = seq, now
                if key in pending and seq >= pending[key]:
                    del pending[key]
        raise TimeoutError("the last frames' values never reached Redis")

    def close(self) -> None:
        self.pubsub.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _publishes(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def _seconds(command: tuple[Any, ...]) -> float:
    """How long a fake command paces for (a burst: 0)."""
    return float(command[2]) if command[0] == "rate" else 0.0


def phase(
    daemon: Daemon,
    fake: multiprocessing.connection.Connection,
    client: redis.Redis,
    prefix: str,
    markets: Markets,
    command: tuple[Any, ...],
    sampled: list[Key] | None,
) -> dict[str, Any]:
    """Run one load phase and measure it (``sampled``: watch only these symbols)."""
    watcher = Watcher(client, prefix, list(markets), sampled)
    cpu0, publishes0 = daemon.cpu_seconds(), _publishes(client)
    fake.send(command)
    result, done, rss_samples = watcher.watch(fake, daemon, timeout=120 + 2 * _seconds(command))
    if sampled is not None:
        last_key = max(result["last"], key=lambda item: item[1])[0]
        assert tuple(last_key) in sampled, "the last frame's symbol must be watched"
    cpu, publishes = daemon.cpu_seconds() - cpu0, _publishes(client) - publishes0
    watcher.close()
    layout = RedisLayout(prefix)
    stored = {exchange: layout.read_tickers(client, exchange) for exchange in markets}
    wrong = [key for key, seq in result["last"] if stored[key[0]].get(key[1], {}).get("ask_size") != seq]
    elapsed = done - result["first_sent"]
    lat = watcher.latencies
    return {
        "frames": result["sent"],
        "seconds": elapsed,
        "frames_per_s": result["sent"] / elapsed,
        "writes_per_s": publishes / elapsed,
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "samples": len(lat),
        "to_decode_p50_ms": _percentile(watcher.to_decode, 0.50) * 1e3,
        "to_decode_p99_ms": _percentile(watcher.to_decode, 0.99) * 1e3,
        "cpu_us_per_frame": cpu / result["sent"] * 1e6,
        "cpu_share": cpu / elapsed,
        "peak_rss_mib": daemon.peak_rss(),
        # RSS at the start, each quarter and the end of the phase: growth vs. a plateau.
        "rss_course": [rss_samples[round(q * (len(rss_samples) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)],
        "final_values_wrong": len(wrong),
    }


def floor(
    command: tuple[Any, ...],
    markets: Markets,
    fake: multiprocessing.connection.Connection,
    client: redis.Redis,
) -> dict[str, float]:
    """Latency of the harness alone (fake → Redis → watcher) with the pacing of the rate
    ``command``, for :data:`FLOOR_SECONDS` at most."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    watcher = Watcher(client, prefix, list(markets), None)
    _, rate, seconds, *clustered = command
    seconds = min(seconds, FLOOR_SECONDS)
    fake.send(("floor", rate, seconds, prefix, *clustered))
    watcher.watch(fake, None, timeout=120 + 2 * seconds)
    watcher.close()
    lat = watcher.latencies
    return {
        "p50_ms": _percentile(lat, 0.50) * 1e3,
        "p99_ms": _percentile(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
    }


@contextlib.contextmanager
def profiled(daemon: Daemon, out: Path | None) -> Iterator[None]:
    """py-spy the daemon (raw collapsed stacks in ``out``) while the block runs."""
    if out is None:
        yield
        return
    profiler = subprocess.Popen(
        [
            "py-spy",
            "record",
            "--gil",
            "--pid",
            str(daemon.pid),
            "--rate",
            "500",
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # py-spy attaches
        yield
    finally:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=30)


#: The phases one daemon runs after its warm-up: result label → the fake's command (its first


@dataclass
class PhaseSet:
    """The symbols, layout and phases one daemon (per checkout and engine) runs."""

    name: str
    #: The table's heading.
    title: str
    markets: Markets
    #: Result label → the fake's command (``burst`` or ``rate``).
    phases: dict[str, tuple[Any, ...]]
    #: exchange → ``symbols_per_connection`` (missing: the adapter's limit).
    per_connection: dict[str, int] = field(default_factory=dict)

    def sampled(self, command: tuple[Any, ...]) -> list[Key] | None:
        """A burst on one exchange is watched on its last :data:`SAMPLED` symbols (the frames
        cycle through them in order, so the burst's last frame is among them); anything else
        on every symbol."""
        if command[0] != "burst" or len(self.markets) != 1:
            return None
        ((exchange, names),) = self.markets.items()
        return [(exchange, name) for name in names[-SAMPLED:]]

    def symbol_count(self) -> int:
        return sum(len(names) for names in self.markets.values())


def _rate_label(command: tuple[Any, ...]) -> str:
    return "full" if command[0] == "burst" else f"{command[1]:,}"


def phase_sets(args: argparse.Namespace) -> list[PhaseSet]:
    """The sets the command line asks for; the default set when it names none."""
    sets: list[PhaseSet] = []
    binance = {"binance": symbols(args.symbols)}
    if args.sweep is not None:
        phases = {
            "full" if rate is None else f"rate-{rate}": ("burst", args.burst)
            if rate is None
            else ("rate", rate, args.duration)
            for rate in args.sweep
        }
        sets.append(
            PhaseSet(
                "sweep",
                f"rate sweep: binance, {args.symbols} symbols on one connection, {args.duration:g} s per rate"
                f" (full: burst of {args.burst:,} frames, latency sampled on {SAMPLED} symbols)",
                binance,
                phases,
            )
        )
    if args.wide:
        connections, per_connection = args.wide_layout
        exchanges = args.wide_exchanges
        counts = [
            connections // len(exchanges) + (i < connections % len(exchanges)) for i in range(len(exchanges))
        ]
        markets = {
            exchange: symbols(count * per_connection)
            for exchange, count in zip(exchanges, counts, strict=True)
        }
        spread = ", ".join(f"{exchange} {count}" for exchange, count in zip(exchanges, counts, strict=True))
        sets.append(
            PhaseSet(
                "wide",
                f"wide deployment: {connections} connections × {per_connection} symbols ({spread}),"
                f" {args.wide_rate:,} frames/s in total for {args.duration:g} s, spread over the connections",
                markets,
                {"wide": ("rate", args.wide_rate, args.duration)},
                {exchange: per_connection for exchange in exchanges},
            )
        )
    if args.idle:
        n = args.idle_symbols
        phases = {"idle": ("rate", n, args.idle_seconds, False)}
        if args.clustered:
            phases["idle-clustered"] = ("rate", n, args.idle_seconds, True)
        sets.append(
            PhaseSet(
                "idle",
                f"idle: {args.idle_exchange}, {n:,} symbols at 1 update/s each for {args.idle_seconds:g} s"
                " (idle: each symbol on its own phase of the second; idle-clustered: each second's updates"
                " in one burst), connections at the adapter's limit",
                {args.idle_exchange: symbols(n)},
                phases,
            )
        )
    if not sets:
        sets.append(
            PhaseSet(
                "default",
                f"binance, {args.symbols} symbols on one connection",
                binance,
                {"burst": ("burst", args.burst), "rate": ("rate", args.rate, args.duration)},
            )
        )
    return sets


#: One daemon's results: its connections (exchange → count) and each phase's figures.
@dataclass
class Run:
    checkout: Checkout
    engine: str
    connections: dict[str, int]
    phases: dict[str, dict[str, Any]]


def run_daemon(
    checkout: Checkout,
    engine: str,
    phases: PhaseSet,
    args: argparse.Namespace,
    port: int,
    fake: multiprocessing.connection.Connection,
    client: redis.Redis,
    workdir: Path,
) -> Run:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    daemon = Daemon(checkout, engine, port, phases.markets, phases.per_connection, prefix, workdir)
    who = f"[{checkout.label} {engine}]"

    def profile(name: str) -> Path | None:
        return Path(args.profile) / f"{checkout.label}-{engine}-{name}.txt" if args.profile else None

    try:
        fake.send(("wait_subscribed", phases.symbol_count()))
        connections: dict[str, int] = fake.recv()
        layout = ", ".join(f"{exchange} {count}" for exchange, count in connections.items())
        if phases.per_connection and not checkout.layout_knob:
            print(
                f"{who} no [exchanges.NAME] symbols_per_connection in this checkout: the layout is set by"
                f" lowering its adapters' max_symbols_per_connection in the daemon process;"
                f" {sum(connections.values())} connections ({layout})",
                file=sys.stderr,
                flush=True,
            )
        print(f"{who} subscribed on {layout} connection(s); warm-up", file=sys.stderr, flush=True)
        phase(daemon, fake, client, prefix, phases.markets, ("burst", 20 * phases.symbol_count()), None)
        results: dict[str, dict[str, Any]] = {}
        for label, command in phases.phases.items():
            if command[0] == "burst":
                print(f"{who} {label}: burst of {command[1]:,} frames", file=sys.stderr, flush=True)
            else:
                print(
                    f"{who} {label}: {command[1]:,} frames/s for {command[2]:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            with profiled(daemon, profile(label)):
                results[label] = phase(
                    daemon, fake, client, prefix, phases.markets, command, phases.sampled(command)
                )
        return Run(checkout, engine, connections, results)
    finally:
        daemon.stop()
        for key in client.scan_iter(RedisLayout(prefix).owned_pattern()):
            client.delete(key)


def report_default(runs: list[Run], base: dict[str, float], args: argparse.Namespace) -> None:
    """The default set: a column per daemon, a row per figure, the rate phase's RSS course."""
    rows = [
        ("frames", "{:,.0f}"),
        ("frames_per_s", "{:,.0f}"),
        ("writes_per_s", "{:,.0f}"),
        ("p50_ms", "{:.3f}"),
        ("p99_ms", "{:.3f}"),
        ("max_ms", "{:.3f}"),
        ("samples", "{:,.0f}"),
        ("to_decode_p50_ms", "{:.3f}"),
        ("to_decode_p99_ms", "{:.3f}"),
        ("cpu_us_per_frame", "{:.2f}"),
        ("cpu_share", "{:.2f}"),
        ("peak_rss_mib", "{:.1f}"),
        ("final_values_wrong", "{:.0f}"),
    ]
    heads = [f"{run.checkout.label} {run.engine}" for run in runs]
    width = max(16, *(len(head) + 2 for head in heads))
    for name, title in (
        ("burst", f"full speed: burst of {args.burst:,} frames, {args.symbols} symbols"),
        ("rate", f"fixed rate: {args.rate:,} frames/s for {args.duration:g} s, {args.symbols} symbols"),
    ):
        print(f"\n{title}")
        print(f"  {'':<20}" + "".join(f"{head:>{width}}" for head in heads))
        for key, fmt in rows:
            print(f"  {key:<20}" + "".join(f"{fmt.format(run.phases[name][key]):>{width}}" for run in runs))
        if name == "rate":
            for run, head in zip(runs, heads, strict=True):
                course = " → ".join(f"{mib:.1f}" for mib in run.phases[name]["rss_course"])
                print(f"  rss_mib over the phase ({head}): {course}")
    print(
        f"\nharness floor (the fake publishes straight to Redis at {args.rate:,}/s for "
        f"{min(args.duration, FLOOR_SECONDS):g} s, same watcher): "
        f"p50 {base['p50_ms']:.3f} ms, p99 {base['p99_ms']:.3f} ms, max {base['max_ms']:.3f} ms"
    )


def report_table(phases: PhaseSet, runs: list[Run], floors: dict[str, dict[str, float]]) -> None:
    """One table: a row per daemon and phase, the harness floor at that phase's pacing beside it."""
    columns = [
        ("frames_per_s", "frames/s", "{:,.0f}", 10),
        ("cpu_us_per_frame", "cpu µs/frame", "{:.2f}", 13),
        ("cpu_share", "cpu share", "{:.3f}", 10),
        ("p50_ms", "p50 ms", "{:.3f}", 8),
        ("p99_ms", "p99 ms", "{:.3f}", 8),
        ("max_ms", "max ms", "{:.3f}", 8),
        ("to_decode_p50_ms", "dec p50", "{:.3f}", 8),
        ("to_decode_p99_ms", "dec p99", "{:.3f}", 8),
        ("peak_rss_mib", "rss MiB", "{:.1f}", 8),
    ]
    floor_columns = [("p50_ms", "floor p50"), ("p99_ms", "floor p99"), ("max_ms", "floor max")]
    daemon_width = max(8, *(len(run.checkout.label) + 2 for run in runs))
    phase_width = max(6, *(len(label) + 2 for label in phases.phases))
    print(f"\n{phases.title}; latencies in ms, dec = to_decode; floor = the harness alone at that pacing")
    print(
        f"  {'daemon':<{daemon_width}}{'engine':<16}{'phase':<{phase_width}}{'rate':>8}{'conns':>6}"
        + "".join(f"{title:>{width}}" for _, title, _, width in columns)
        + "".join(f"{title:>10}" for _, title in floor_columns)
        + f"{'lost':>6}"
    )
    for run in runs:
        for label, command in phases.phases.items():
            r = run.phases[label]
            base = floors.get(label)
            print(
                f"  {run.checkout.label:<{daemon_width}}{run.engine:<16}{label:<{phase_width}}"
                f"{_rate_label(command):>8}{sum(run.connections.values()):>6}"
                + "".join(f"{fmt.format(r[key]):>{width}}" for key, _, fmt, width in columns)
                + "".join(f"{'—' if base is None else f'{base[key]:.3f}':>10}" for key, _ in floor_columns)
                + f"{r['final_values_wrong']:>6}"
            )


def sweep_rates(text: str) -> list[int | None]:
    """``1000,5000,full`` → ``[1000, 5000, None]`` (``None``: the full-speed burst)."""
    return [None if item == "full" else int(item) for item in text.split(",")]


def wide_layout(text: str) -> tuple[int, int]:
    """``20x50`` → 20 connections of 50 symbols."""
    connections, _, per_connection = text.partition("x")
    return int(connections), int(per_connection)


def exchange_list(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in PATHS]
    if unknown:
        raise argparse.ArgumentTypeError(f"the fake speaks {', '.join(PATHS)}; not {', '.join(unknown)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", action="append", help="engines to compare (default: both)")
    parser.add_argument(
        "--python",
        action="append",
        metavar="PATH",
        help="interpreter whose `-m tickerd` is measured (repeat to compare checkouts; default: this one)",
    )
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200_000, help="frames sent at full speed")
    parser.add_argument("--rate", type=int, default=5000, help="frames/s of the fixed-rate phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each fixed-rate phase")
    parser.add_argument(
        "--sweep",
        type=sweep_rates,
        metavar="RATES",
        help="the fixed-rate phase at each rate (frames/s; 'full': the burst), e.g. 1000,5000,20000,full;"
        " one table, with the harness floor per rate",
    )
    parser.add_argument("--wide", action="store_true", help="the wide deployment phase (several exchanges)")
    parser.add_argument(
        "--wide-layout", type=wide_layout, default=(20, 50), metavar="CxS", help="connections x symbols each"
    )
    parser.add_argument("--wide-rate", type=int, default=5000, help="frames/s in total of the wide phase")
    parser.add_argument(
        "--wide-exchanges", type=exchange_list, default=["binance", "bybit", "okx"], metavar="NAMES"
    )
    parser.add_argument("--idle", action="store_true", help="the idle phase: 1 update per symbol per second")
    parser.add_argument("--idle-symbols", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=IDLE_MIN_SECONDS)
    parser.add_argument("--idle-exchange", choices=sorted(PATHS), default="binance")
    parser.add_argument(
        "--clustered", action="store_true", help="idle: also each second's updates in one burst"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the daemon in each phase (raw stacks, DIR/DAEMON-ENGINE-PHASE.txt)",
    )
    args = parser.parse_args()
    if args.profile:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy on PATH (pip install py-spy)")
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.idle and args.idle_seconds < IDLE_MIN_SECONDS:
        parser.error(f"--idle-seconds: at least {IDLE_MIN_SECONDS:g}")
    engines = args.engine or ["websockets", "trio-websocket"]
    checkouts: list[Checkout] = []
    for python in args.python or [sys.executable]:
        checkouts.append(Checkout.probe(python, {c.label for c in checkouts}))
    for checkout in checkouts:
        print(checkout.describe(), file=sys.stderr)
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    ctx = multiprocessing.get_context("spawn")
    reports: list[tuple[PhaseSet, list[Run], dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for phases in phase_sets(args):
            ours, theirs = ctx.Pipe()
            fake_process = ctx.Process(target=run_fake, args=(phases.markets, theirs), daemon=True)
            fake_process.start()
            port = ours.recv()
            try:
                runs = [
                    run_daemon(checkout, engine, phases, args, port, ours, client, Path(tmp))
                    for checkout in checkouts
                    for engine in engines
                ]
                floors: dict[str, dict[str, float]] = {}
                for label, command in phases.phases.items():
                    if command[0] == "rate":
                        print(f"harness floor: {label}", file=sys.stderr, flush=True)
                        floors[label] = floor(command, phases.markets, ours, client)
            finally:
                ours.send(("stop",))
                fake_process.join(timeout=5)
            reports.append((phases, runs, floors))
    client.close()
    for checkout in checkouts:
        print(checkout.describe())
    for phases, runs, floors in reports:
        if phases.name == "default":
            report_default(runs, floors["rate"], args)
        else:
            report_table(phases, runs, floors)


if __name__ == "__main__":
    main()
