"""A fleet at size: 5 instances × 2,000 symbols on a fake Binance, through steady state, a kill -9,
a join and a SIGTERM.

    .venv/bin/python bench/fleet.py [--instances 5] [--symbols 2000] [--replicas 1] [--lease 10]
        [--window 20] [--period 4] [--probes 100] [--probe-period 0.25]

Processes: a private ``redis-server`` (keyspace notifications on, so every member-record write
is seen without ``MONITOR``), the fake exchange (:class:`tickerd.testing.fleet.FleetBinance`:
every instance on its own URL path, so the fake's subscription lists say who holds what), the
instances (``python -m tickerd run``) and this process, which records every update of the probes.

Every symbol is updated once per ``--period`` seconds, and ``--probes`` of them once per
``--probe-period``: the gaps per symbol are measured on the probes, whose updates are frequent
enough to show a gap under a second.

Printed:

* **start** of the instances together: the time until every symbol is held by its owners, and
  the subscriptions and unsubscriptions the fake was sent meanwhile (churn: more than one
  subscription per symbol and replica);
* **steady state** over ``--window`` seconds once the fleet has converged and every member
  has delivered every symbol it subscribes: the probes' gaps
  with nothing happening (the floor the other gaps compare with), and per instance CPU (% of
  one core), RSS, symbols held, and member-record writes per second (the coordination writes;
  the bound is one per instance per second);
* **kill -9** of one instance: the time until every symbol is held by its new owners (the
  fake's subscription lists equal the rendezvous over the live instances: rebalanced), and the
  gap per probe symbol of the dead instance (max, p50);
* **join** of a new instance: time to rebalance, the symbols that moved, the gap per moved
  probe;
* **SIGTERM** of one instance: time to rebalance, the gap per probe it held, its exit status.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import orjson
import redis
import trio

sys.path.insert(0, str(Path(__file__).absolute().parents[1]))

from tests.processes import RedisServer
from tickerd.fleet import owners, read_members
from tickerd.layout import RedisLayout
from tickerd.testing.fleet import Arrivals, FleetBinance, Gaps, symbols

PREFIX = "fleet-bench:"
LAYOUT = RedisLayout(PREFIX)
FLEET = "bench"
EXCHANGE = "binance"
#: Seconds between two looks at the fake's subscription lists while waiting for a rebalance.
POLL = 0.1

Assignment = dict[str, tuple[str, ...]]


# -- the fake (its own process) -------------------------------------------------------------


def run_fake(
    names: list[str],
    probes: int,
    period: float,
    probe_period: float,
    pipe: multiprocessing.connection.Connection,
) -> None:
    """Serve the fake and trade ``names`` (the first ``probes`` of them faster) until ``stop``;
    answer ``assignment`` with who holds each symbol, ``churn`` with how many subscriptions and
    unsubscriptions it has been sent."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            fake: FleetBinance = await nursery.start(FleetBinance().serve)
            nursery.start_soon(fake.trade, names[:probes], probe_period, random.Random(1))
            nursery.start_soon(fake.trade, names[probes:], period, random.Random(2))
            pipe.send(fake.url)
            while True:
                command = await trio.to_thread.run_sync(pipe.recv)
                if command == "stop":
                    nursery.cancel_scope.cancel()
                    return
                if command == "churn":
                    changes = [change for _, change, _ in fake.changes]
                    pipe.send((changes.count("subscribe"), changes.count("unsubscribe")))
                    continue
                pipe.send(fake.assignment(names))

    trio.run(main)


class Fake:
    """The fake's process, asked over a pipe."""

    def __init__(self, names: list[str], probes: int, period: float, probe_period: float) -> None:
        context = multiprocessing.get_context("spawn")  # not a fork of this process's running trio
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=run_fake, args=(names, probes, period, probe_period, theirs), daemon=True
        )
        self.process.start()
        assert self.process.pid is not None
        self.pid: int = self.process.pid
        self.url: str = self.pipe.recv()

    def assignment(self) -> Assignment:
        self.pipe.send("assignment")
        answer: Assignment = self.pipe.recv()
        return answer

    def churn(self) -> tuple[int, int]:
        """Subscriptions and unsubscriptions the instances have sent so far."""
        self.pipe.send("churn")
        answer: tuple[int, int] = self.pipe.recv()
        return answer

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=10)


# -- the instances --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Instance:
    """``python -m tickerd run`` as fleet member ``name``; /proc figures for it."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tickerd", "--config", str(config), "run"], stderr=self._log
        )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise KeyError("VmRSS")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        status = self.process.wait(timeout=60)
        self._log.close()
        return status


class Fleet:
    """The instances of the bench's fleet, started and stopped by name."""

    def __init__(
        self, directory: Path, redis_url: str, fake: Fake, names: list[str], args: argparse.Namespace
    ) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self.fake = fake
        self.names = names
        self.args = args
        self.instances: dict[str, Instance] = {}

    def start(self, name: str) -> None:
        config = self.directory / f"{name}.toml"
        config.write_text(
            f'[redis]\nurl = "{self.redis_url}"\nprefix = "{PREFIX}"\n'
            '[log]\nlevel = "WARNING"\n'
            "[health]\ninterval = 5.0\nstale_after = 120.0\n"
            f'[fleet]\nname = "{FLEET}"\ninstance = "{name}"\nlease = {self.args.lease}\n'
            f"replicas = {self.args.replicas}\n"
            f'[exchanges.{EXCHANGE}]\nurl = "{self.fake.url}/{name}"\n'
            f"symbols = {orjson.dumps(self.names).decode()}\n"
        )
        self.instances[name] = Instance(name, config, self.directory / f"{name}.log")

    def expected(self) -> Assignment:
        live = sorted(self.instances)
        return {s: tuple(sorted(owners(live, EXCHANGE, s, self.args.replicas))) for s in self.names}

    async def rebalanced(self, limit: float = 120) -> float:
        """Seconds until the fake's subscription lists equal the rendezvous over the live
        instances (looked at every :data:`POLL` seconds)."""
        start = time.monotonic()
        expected = self.expected()
        while await trio.to_thread.run_sync(self.fake.assignment) != expected:
            for instance in self.instances.values():
                if instance.process.poll() is not None:
                    raise RuntimeError(f"{instance.name} exited with status {instance.process.returncode}")
            if time.monotonic() - start > limit:
                raise RuntimeError(f"not rebalanced within {limit} s")
            await trio.sleep(POLL)
        return time.monotonic() - start


# -- coordination writes --------------------------------------------------------------------


class MemberWrites:
    """Every write of a member record (a keyspace ``set`` on it), per instance."""

    def __init__(self, client: redis.Redis) -> None:
        client.config_set("notify-keyspace-events", "K$")
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        member = LAYOUT.fleet_member(FLEET, "")
        self._start = len("__keyspace@0__:") + len(member)
        self._pubsub.psubscribe(f"__keyspace@0__:{member}*")
        self.seen: list[tuple[float, str]] = []

    async def run(self) -> None:
        try:
            while True:
                message = await trio.to_thread.run_sync(self._pubsub.get_message, False, 0.2)
                if message and message["data"] == b"set":
                    self.seen.append((time.monotonic(), message["channel"][self._start :].decode()))
        finally:
            self._pubsub.close()

    def rate(self, instance: str, start: float, end: float) -> float:
        return sum(1 for t, name in self.seen if name == instance and start <= t < end) / (end - start)


# -- the phases -----------------------------------------------------------------------------


def held(assignment: Assignment, instance: str) -> list[str]:
    return [s for s, holders in assignment.items() if instance in holders]


def probe_gaps(arrivals: Arrivals, names: Sequence[str], probes: set[str], since: float) -> Gaps:
    return arrivals.gaps([s for s in names if s in probes], since)


async def settle(arrivals: Arrivals, names: Collection[str]) -> None:
    """Wait until every symbol of ``names`` has been updated since now (the gaps are closed)."""
    since = time.monotonic()
    await arrivals.wait_until(lambda: arrivals.updated_since(names, since), within=120)


async def delivered(client: redis.Redis, instances: Collection[str]) -> None:
    """Wait until every member of ``instances`` lists every symbol it subscribes as delivered:
    until then, first deliveries change the records (writes that steady state does not have)."""
    while True:
        members = await trio.to_thread.run_sync(read_members, client, LAYOUT, FLEET)
        if {m.instance for m in members} == set(instances) and all(
            collected.delivered == collected.subscribed for m in members for collected in m.exchanges.values()
        ):
            return
        await trio.sleep(POLL)


async def bench(args: argparse.Namespace, redis_url: str, directory: Path) -> None:
    names = symbols(args.symbols)
    probes = set(names[: args.probes])
    fake = Fake(names, args.probes, args.period, args.probe_period)
    client = redis.Redis.from_url(redis_url)
    fleet = Fleet(directory, redis_url, fake, names, args)
    try:
        async with trio.open_nursery() as nursery:
            arrivals = Arrivals(client, LAYOUT, EXCHANGE, only=probes)
            writes = MemberWrites(client)
            nursery.start_soon(arrivals.run)
            nursery.start_soon(writes.run)
            print(
                f"fleet: {args.instances} instances × {args.symbols} symbols, replicas {args.replicas}, "
                f"lease {args.lease:g} s; each symbol updated every {args.period:g} s, "
                f"{args.probes} probes every {args.probe_period:g} s"
            )
            for i in range(args.instances):
                fleet.start(f"i{i + 1}")
            took = await fleet.rebalanced()
            await settle(arrivals, probes)
            await delivered(client, fleet.instances)
            subscribed, unsubscribed = await trio.to_thread.run_sync(fake.churn)
            print(
                f"start: every symbol on its owners after {took:.1f} s; the exchange was sent "
                f"{subscribed} subscriptions and {unsubscribed} unsubscriptions "
                f"(no churn: {args.symbols * min(args.replicas, args.instances)} and 0)"
            )

            harness = {"fake": fake.pid, "this process": os.getpid()}
            cpu = {name: cpu_seconds(pid) for name, pid in harness.items()}
            cpu |= {name: instance.cpu_seconds() for name, instance in fleet.instances.items()}
            begin = time.monotonic()
            await trio.sleep(args.window)
            end = time.monotonic()
            assignment = await trio.to_thread.run_sync(fake.assignment)
            steady = arrivals.gaps(sorted(probes), begin, end)
            load = ", ".join(
                f"{name} {(cpu_seconds(pid) - cpu[name]) / (end - begin) * 100:.0f} %"
                for name, pid in harness.items()
            )
            print(f"steady state over {args.window:g} s (probes: {steady}; CPU of the {load}):")
            for name, instance in sorted(fleet.instances.items()):
                share = (instance.cpu_seconds() - cpu[name]) / (end - begin) * 100
                print(
                    f"  {name}: {len(held(assignment, name)):5} symbols, CPU {share:5.1f} %, "
                    f"RSS {instance.rss_mib():5.1f} MiB, "
                    f"member-record writes {writes.rate(name, begin, end):.2f}/s"
                )

            victim = "i1"
            lost = held(assignment, victim)
            killed = time.monotonic()
            fleet.instances.pop(victim).stop(signal.SIGKILL)
            took = await fleet.rebalanced()
            await settle(arrivals, probes.intersection(lost))
            print(
                f"kill -9 {victim}: rebalanced in {took:.1f} s; "
                f"its probes: {probe_gaps(arrivals, lost, probes, killed)}; "
                f"all probes: {probe_gaps(arrivals, names, probes, killed)}"
            )

            before = await trio.to_thread.run_sync(fake.assignment)
            joined = time.monotonic()
            fleet.start(f"i{args.instances + 1}")
            took = await fleet.rebalanced()
            after = await trio.to_thread.run_sync(fake.assignment)
            moved = [s for s in names if after[s] != before[s]]
            await settle(arrivals, probes)
            print(
                f"join i{args.instances + 1}: rebalanced in {took:.1f} s, {len(moved)} symbols moved; "
                f"moved probes: {probe_gaps(arrivals, moved, probes, joined)}; "
                f"all probes: {probe_gaps(arrivals, names, probes, joined)}"
            )

            leaving = "i2"
            theirs = held(after, leaving)
            terminated = time.monotonic()
            instance = fleet.instances.pop(leaving)
            status = await trio.to_thread.run_sync(instance.stop)
            stopped = time.monotonic() - terminated
            took = await fleet.rebalanced()
            await settle(arrivals, probes.intersection(theirs))
            print(
                f"SIGTERM {leaving}: exited {status} {stopped:.1f} s after the signal, rebalanced "
                f"{took:.1f} s later; its probes: {probe_gaps(arrivals, theirs, probes, terminated)}; "
                f"all probes: {probe_gaps(arrivals, names, probes, terminated)}"
            )
            published = sum(map(len, arrivals.updates.values()))
            print(f"published updates: {published}, going backwards: {len(arrivals.backwards())}")
            nursery.cancel_scope.cancel()
    finally:
        for instance in fleet.instances.values():
            instance.stop()
        fake.stop()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--lease", type=float, default=10.0, help="fleet.lease (default: tickerd's)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--period", type=float, default=4.0, help="seconds between two updates of a symbol")
    parser.add_argument("--probes", type=int, default=100, help="symbols updated faster, for the gaps")
    parser.add_argument("--probe-period", type=float, default=0.25)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            trio.run(bench, args, server.url, Path(directory))
    finally:
        server.kill()


if __name__ == "__main__":
    main()
