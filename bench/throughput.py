"""End-to-end throughput and latency: a fake Binance → a running tickerd → a real Redis.

    .venv/bin/python bench/throughput.py [--engine websockets --engine trio-websocket]
        [--symbols 200] [--burst 200000] [--rate 5000] [--duration 10] [--profile DIR]
        [--sweep 1000,5000,20000,full]

Three processes, so that the figures are the daemon's own: the fake exchange (a trio server
that speaks Binance's ``/ws`` protocol and writes pre-encoded frames straight to the socket),
the daemon (``python -m tickerd`` with a generated config, one engine at a time, against the
same fake and the same symbols), and this process, which drives the fake and watches Redis.

Every frame carries the time the fake sent it (``B``, the bid size) and a sequence number
(``A``, the ask size), so the watcher measures frame-send → visible-in-Redis latency from
each published update (``ticker_updates:*``: the writer publishes after the ``HSET`` in the
same pipeline) and knows when the last frame's value arrived.

* **burst**: ``--burst`` frames as fast as the socket takes them (the frames cycle through
  the symbols).  Frames/s end to end = frames / (first frame sent → last frame's value
  published).  Latency is sampled on 10 symbols (all 200 would make the watcher the
  bottleneck).  Every symbol's final value is then checked in the hash.
* **rate**: ``--rate`` frames/s for ``--duration`` seconds (the fake sends what is due every
  millisecond), every update watched; RSS is sampled each second so a long run
  (``--duration 600``) shows whether memory grows.
* **harness floor**: the same pacing (at most 10 s) with the fake publishing straight to
  Redis and no daemon: the latency the fake, Redis and the watcher add on their own.

* **sweep** (``--sweep``, instead of the two phases above): the rate phase at each rate given
  (``full``: the burst) against the same daemon, and the harness floor at each rate: one table,
  so CPU per frame and latency show as a curve over the rate, not one point.

``to_decode`` is the part of the latency before the daemon decoded the frame (its
``received_ts``): the socket and the daemon waking up, as opposed to the writer.

CPU per frame is the daemon's user+system time over the phase divided by its frames; peak
RSS is the daemon's ``VmHWM`` after the phase.  Redis writes/s count ``PUBLISH`` calls
(``INFO commandstats``; one per written ticker).
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
from pathlib import Path
from typing import Any

import orjson
import redis
import trio
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol

from tickerd.layout import RedisLayout

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Frames written per ``send_all`` at full speed (they share one send timestamp).
CHUNK = 256
#: Symbols whose every update is watched during the burst.
SAMPLED = 10
#: The harness floor is a latency distribution, not a soak: it never runs longer than this.
FLOOR_SECONDS = 10.0


def symbols(count: int) -> list[str]:
    return [f"X{i:03d}/USDT" for i in range(count)]


def _ws_header(length: int) -> bytes:
    """An unmasked, final text frame's header (server → client)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


def _stamp() -> bytes:
    """The send time, fixed width (17 bytes), so pre-encoded frames keep their length."""
    return b"%.6f" % time.time()


# -- the fake exchange (its own process) ------------------------------------------------------


class FakeServer:
    """Binance ``/ws``: acknowledges SUBSCRIBE requests, then sends what it is told to."""

    def __init__(self, names: list[str]) -> None:
        self.natives = {s.replace("/", "").lower(): s for s in names}
        self.names = names
        self.stream: trio.SocketStream | None = None
        self.protocol: ServerProtocol | None = None
        self.subscribed: set[str] = set()
        self.changed = trio.Event()
        self.send_lock = trio.StrictFIFOLock()
        self.seq = 0

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def _flush(self, stream: trio.SocketStream, protocol: ServerProtocol) -> None:
        async with self.send_lock:
            data = b"".join(protocol.data_to_send())
            if data:
                await stream.send_all(data)

    async def handle(self, stream: trio.SocketStream) -> None:
        """One daemon connection: handshake, then answer its requests until it goes."""
        protocol = ServerProtocol(max_size=None)
        try:
            while True:
                data = await stream.receive_some()
                if not data:
                    return
                protocol.receive_data(data)
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        protocol.send_response(protocol.accept(event))
                        self.stream, self.protocol, self.subscribed = stream, protocol, set()
                    elif isinstance(event, Frame) and event.opcode.name == "TEXT":
                        request = orjson.loads(event.data)
                        for param in request.get("params", []):
                            native = param.partition("@")[0]
                            if native in self.natives and request["method"] == "SUBSCRIBE":
                                self.subscribed.add(self.natives[native])
                        protocol.send_text(orjson.dumps({"result": None, "id": request["id"]}))
                await self._flush(stream, protocol)
                self._notify()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            if self.stream is stream:
                self.stream = None
                self._notify()

    async def wait_subscribed(self, count: int) -> None:
        while len(self.subscribed) < count or self.stream is None:
            await self.changed.wait()

    def _frame_parts(self, count: int) -> tuple[list[bytes], list[tuple[str, int]]]:
        """``count`` frames as text around their send-time placeholder, and the last
        (symbol, seq) of every symbol they carry."""
        parts: list[bytes] = []
        last: dict[str, int] = {}
        n = len(self.names)
        for i in range(count):
            self.seq += 1
            name = self.names[i % n]
            price = 100.0 + (self.seq % 1000) / 100
            head = b'{"u":%d,"s":"%s","b":"%.8f","B":"' % (self.seq, name.replace("/", "").encode(), price)
            tail = b'","a":"%.8f","A":"%d"}' % (price + 0.01, self.seq)
            parts.append(_ws_header(len(head) + 17 + len(tail)) + head)
            parts.append(tail)
            last[name] = self.seq
        return parts, sorted(last.items())

    async def burst(self, count: int) -> dict[str, Any]:
        """``count`` frames as fast as the socket takes them, ``CHUNK`` per write."""
        parts, last = self._frame_parts(count)
        stream = self.stream
        assert stream is not None
        first = 0.0
        async with self.send_lock:
            for start in range(0, len(parts), 2 * CHUNK):
                chunk = parts[start : start + 2 * CHUNK]
                stamp = _stamp()
                first = first or float(stamp)
                # head0 STAMP tail0 head1 STAMP tail1 …: pairs joined around the stamp.
                await stream.send_all(
                    b"".join(h + stamp + t for h, t in zip(chunk[::2], chunk[1::2], strict=True))
                )
        return {"first_sent": first, "last": last, "sent": count}

    async def rate(self, per_second: int, seconds: float) -> dict[str, Any]:
        """``per_second`` frames for ``seconds``, each stamped as it is sent (1 ms ticks)."""
        stream = self.stream
        assert stream is not None
        total = int(per_second * seconds)
        parts, last = self._frame_parts(total)
        sent = 0
        start = trio.current_time()
        first = 0.0
        while sent < total:
            due = min(total, int((trio.current_time() - start) * per_second) + 1)
            if due > sent:
                stamp = _stamp()
                first = first or float(stamp)
                pairs = parts[2 * sent : 2 * due]
                async with self.send_lock:
                    await stream.send_all(
                        b"".join(h + stamp + t for h, t in zip(pairs[::2], pairs[1::2], strict=True))
                    )
                sent = due
            await trio.sleep(0.001)
        return {"first_sent": first, "last": last, "sent": total}

    async def floor(self, per_second: int, seconds: float, prefix: str) -> dict[str, Any]:
        """The harness alone: the same pacing, but records published straight to Redis (no
        daemon), so that the watcher's own latency on this machine is known.  (redis-py
        blocks this loop while it publishes: this is the harness, not the daemon.)"""
        client = redis.Redis.from_url(REDIS_URL)
        layout = RedisLayout(prefix)
        total = int(per_second * seconds)
        last: dict[str, int] = {}
        sent = 0
        first = 0.0
        start = trio.current_time()
        while sent < total:
            due = min(total, int((trio.current_time() - start) * per_second) + 1)
            if due > sent:
                stamp = time.time()
                first = first or stamp
                pipe = client.pipeline(transaction=False)
                for seq in range(sent + 1, due + 1):
                    name = self.names[seq % len(self.names)]
                    record = {"bid_size": stamp, "ask_size": seq, "received_ts": stamp}
                    pipe.publish(layout.updates("binance", name), orjson.dumps(record))
                    last[name] = seq
                pipe.execute()
                sent = due
            await trio.sleep(0.001)
        client.close()
        return {"first_sent": first, "last": sorted(last.items()), "sent": total}


def run_fake(names: list[str], pipe: multiprocessing.connection.Connection) -> None:
    """The fake's process: serve, and run the commands that come down ``pipe``."""

    async def main() -> None:
        fake = FakeServer(names)
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, fake.handle, 0)
            pipe.send(listeners[0].socket.getsockname()[1])
            while True:
                command, *args = await trio.to_thread.run_sync(pipe.recv)
                if command == "stop":
                    nursery.cancel_scope.cancel()
                    return
                if command == "wait_subscribed":
                    await fake.wait_subscribed(*args)
                    pipe.send(True)
                else:
                    pipe.send(await getattr(fake, command)(*args))

    trio.run(main)


# -- the daemon (its own process) -------------------------------------------------------------


class Daemon:
    """``python -m tickerd`` with one engine, pointed at the fake; /proc figures for it."""

    def __init__(self, engine: str, port: int, names: list[str], prefix: str, workdir: Path) -> None:
        config = workdir / f"{engine}.toml"
        config.write_text(
            f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{prefix}"\n'
            f'[log]\nlevel = "WARNING"\n'
            f'[feed]\nengine = "{engine}"\n'
            f'[exchanges.binance]\nurl = "ws://127.0.0.1:{port}/ws"\n'
            f"symbols = {orjson.dumps(names).decode()}\n"
        )
        self.process = subprocess.Popen([sys.executable, "-m", "tickerd", "--config", str(config)])
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

    def __init__(self, client: redis.Redis, prefix: str, names: list[str] | None) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.layout = layout = RedisLayout(prefix)
        if names is None:
            self.pubsub.psubscribe(layout.updates_pattern("binance"))
        else:
            self.pubsub.subscribe(*(layout.updates("binance", name) for name in names))
        self.latencies: list[float] = []
        #: The part of each latency spent before the daemon decoded the frame (its
        #: ``received_ts``): the socket and the daemon's wake-up, as opposed to the writer.
        self.to_decode: list[float] = []

    def watch(
        self, fake: multiprocessing.connection.Connection, daemon: Daemon | None, timeout: float
    ) -> tuple[dict[str, Any], float, list[float]]:
        """Collect samples (and the daemon's RSS each second) until the fake reports the
        phase done and the update carrying its last frame has arrived.

        Returns the fake's report, when the last frame's value arrived, and the RSS samples.
        """
        result: dict[str, Any] | None = None
        last_seq = newest = 0
        newest_at = 0.0
        rss: list[float] = []
        next_rss = deadline = time.time()
        deadline += timeout
        while time.time() < deadline:
            if result is None and fake.poll(0):
                result = fake.recv()
                last_seq = max(seq for _, seq in result["last"])
            if result is not None and newest >= last_seq:
                return result, newest_at, rss
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
            if record["ask_size"] > newest:
                newest, newest_at = int(record["ask_size"]), now
        raise TimeoutError("the last frame's value never reached Redis")

    def close(self) -> None:
        self.pubsub.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _publishes(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def phase(
    name: str,
    daemon: Daemon,
    fake: multiprocessing.connection.Connection,
    client: redis.Redis,
    prefix: str,
    names: list[str],
    command: tuple[Any, ...],
) -> dict[str, Any]:
    """Run one load phase and measure it."""
    watched = None if name == "rate" else names[-SAMPLED:]
    watcher = Watcher(client, prefix, watched)
    cpu0, publishes0 = daemon.cpu_seconds(), _publishes(client)
    fake.send(command)
    result, done, rss_samples = watcher.watch(
        fake, daemon, timeout=120 + 2 * float(command[-1] if name == "rate" else 0)
    )
    if watched is not None:
        last_symbol = max(result["last"], key=lambda item: item[1])[0]
        assert last_symbol in watched, "the last frame's symbol must be watched"
    cpu, publishes = daemon.cpu_seconds() - cpu0, _publishes(client) - publishes0
    watcher.close()
    stored = RedisLayout(prefix).read_tickers(client, "binance")
    wrong = [s for s, seq in result["last"] if stored.get(s, {}).get("ask_size") != seq]
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
    rate: int, duration: float, fake: multiprocessing.connection.Connection, client: redis.Redis
) -> dict[str, float]:
    """Latency of the harness alone (fake → Redis → watcher) at ``rate`` frames/s, for
    ``duration`` seconds at most (:data:`FLOOR_SECONDS`)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    watcher = Watcher(client, prefix, None)
    seconds = min(duration, FLOOR_SECONDS)
    fake.send(("floor", rate, seconds, prefix))
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
#: item, ``burst`` or ``rate``, names the phase).
Plan = dict[str, tuple[Any, ...]]


def plan(args: argparse.Namespace) -> Plan:
    """The default run (a burst, then the fixed rate), or one phase per ``--sweep`` rate."""
    if args.sweep is None:
        return {"burst": ("burst", args.burst), "rate": ("rate", args.rate, args.duration)}
    phases: Plan = {}
    for rate in args.sweep:
        if rate is None:
            phases["full"] = ("burst", args.burst)
        else:
            phases[f"rate-{rate}"] = ("rate", rate, args.duration)
    return phases


def run_engine(
    engine: str,
    args: argparse.Namespace,
    port: int,
    fake: multiprocessing.connection.Connection,
    client: redis.Redis,
    names: list[str],
    workdir: Path,
) -> dict[str, dict[str, Any]]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    daemon = Daemon(engine, port, names, prefix, workdir)

    def profile(name: str) -> Path | None:
        return Path(args.profile) / f"{engine}-{name}.txt" if args.profile else None

    try:
        fake.send(("wait_subscribed", len(names)))
        fake.recv()
        results: dict[str, dict[str, Any]] = {}
        print(f"[{engine}] subscribed; warm-up", file=sys.stderr, flush=True)
        phase("warmup", daemon, fake, client, prefix, names, ("burst", 20 * len(names)))
        for label, command in plan(args).items():
            if command[0] == "burst":
                print(f"[{engine}] burst of {command[1]} frames", file=sys.stderr, flush=True)
            else:
                print(f"[{engine}] {command[1]} frames/s for {command[2]:g} s", file=sys.stderr, flush=True)
            with profiled(daemon, profile(label)):
                results[label] = phase(command[0], daemon, fake, client, prefix, names, command)
        return results
    finally:
        daemon.stop()
        for key in client.scan_iter(RedisLayout(prefix).owned_pattern()):
            client.delete(key)


def report(
    results: dict[str, dict[str, dict[str, Any]]], base: dict[str, float], args: argparse.Namespace
) -> None:
    engines = list(results)
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
    for name, title in (
        ("burst", f"full speed: burst of {args.burst:,} frames, {args.symbols} symbols"),
        ("rate", f"fixed rate: {args.rate:,} frames/s for {args.duration:g} s, {args.symbols} symbols"),
    ):
        print(f"\n{title}")
        print(f"  {'':<20}" + "".join(f"{engine:>16}" for engine in engines))
        for key, fmt in rows:
            print(f"  {key:<20}" + "".join(f"{fmt.format(results[e][name][key]):>16}" for e in engines))
        if name == "rate":
            for e in engines:
                course = " → ".join(f"{mib:.1f}" for mib in results[e][name]["rss_course"])
                print(f"  rss_mib over the phase ({e}): {course}")
    print(
        f"\nharness floor (the fake publishes straight to Redis at {args.rate:,}/s for "
        f"{min(args.duration, FLOOR_SECONDS):g} s, same watcher): "
        f"p50 {base['p50_ms']:.3f} ms, p99 {base['p99_ms']:.3f} ms, max {base['max_ms']:.3f} ms"
    )


def report_sweep(
    results: dict[str, dict[str, dict[str, Any]]],
    floors: dict[str, dict[str, float]],
    args: argparse.Namespace,
) -> None:
    """One table: a row per engine and rate, the harness floor at that rate beside it."""
    columns = [
        ("frames_per_s", "frames/s", "{:,.0f}", 10),
        ("cpu_us_per_frame", "cpu µs/frame", "{:.2f}", 13),
        ("cpu_share", "cpu share", "{:.2f}", 10),
        ("p50_ms", "p50 ms", "{:.3f}", 8),
        ("p99_ms", "p99 ms", "{:.3f}", 8),
        ("max_ms", "max ms", "{:.3f}", 8),
        ("to_decode_p50_ms", "dec p50", "{:.3f}", 8),
        ("to_decode_p99_ms", "dec p99", "{:.3f}", 8),
    ]
    floor_columns = [("p50_ms", "floor p50"), ("p99_ms", "floor p99"), ("max_ms", "floor max")]
    print(
        f"\nrate sweep: {args.symbols} symbols, {args.duration:g} s per rate (full: burst of {args.burst:,}"
        f" frames, latency sampled on {SAMPLED} symbols); latencies in ms, dec = to_decode; the floor is"
        f" the harness alone at that rate ({min(args.duration, FLOOR_SECONDS):g} s)"
    )
    print(
        f"  {'engine':<16}{'rate':>8}"
        + "".join(f"{title:>{width}}" for _, title, _, width in columns)
        + "".join(f"{title:>10}" for _, title in floor_columns)
        + f"{'lost':>6}"
    )
    for engine, phases in results.items():
        for label, command in plan(args).items():
            r = phases[label]
            base = floors.get(label)
            print(
                f"  {engine:<16}{'full' if command[0] == 'burst' else f'{command[1]:,}':>8}"
                + "".join(f"{fmt.format(r[key]):>{width}}" for key, _, fmt, width in columns)
                + "".join(f"{'—' if base is None else f'{base[key]:.3f}':>10}" for key, _ in floor_columns)
                + f"{r['final_values_wrong']:>6}"
            )


def sweep_rates(text: str) -> list[int | None]:
    """``1000,5000,full`` → ``[1000, 5000, None]`` (``None``: the full-speed burst)."""
    return [None if item == "full" else int(item) for item in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", action="append", help="engines to compare (default: both)")
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200_000, help="frames sent at full speed")
    parser.add_argument("--rate", type=int, default=5000, help="frames/s of the fixed-rate phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the fixed-rate phase")
    parser.add_argument(
        "--sweep",
        type=sweep_rates,
        metavar="RATES",
        help="the fixed-rate phase at each rate (frames/s; 'full': the burst), e.g. 1000,5000,20000,full;"
        " one table, with the harness floor per rate",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the daemon in each phase (raw stacks, DIR/ENGINE-PHASE.txt)"
    )
    args = parser.parse_args()
    if args.profile:
        if shutil.which("py-spy") is None:
            parser.error("--profile needs py-spy on PATH (pip install py-spy)")
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    engines = args.engine or ["websockets", "trio-websocket"]
    names = symbols(args.symbols)
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    fake_process = ctx.Process(target=run_fake, args=(names, theirs), daemon=True)
    fake_process.start()
    port = ours.recv()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for engine in engines:
                results[engine] = run_engine(engine, args, port, ours, client, names, Path(tmp))
            floors: dict[str, dict[str, float]] = {}
            for label, command in plan(args).items():
                if command[0] == "rate":
                    print(f"harness floor at {command[1]} frames/s", file=sys.stderr, flush=True)
                    floors[label] = floor(command[1], command[2], ours, client)
    finally:
        ours.send(("stop",))
        fake_process.join(timeout=5)
        client.close()
    if args.sweep is None:
        report(results, floors["rate"], args)
    else:
        report_sweep(results, floors, args)


if __name__ == "__main__":
    main()
