"""``tickerd status`` in fleet mode: members, subscriptions owned by nobody or by too many.

The records are written here as members on other machines would write them (their member
records and per-instance heartbeats), so each verdict is reached on purpose; the acceptance
tests (tests/test_fleet_acceptance.py) run ``status`` against real instances.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import redis
import trio

from tests.conftest import REDIS_URL, run_cli
from tickerd import config, snapshots
from tickerd.commands.status import read_summary
from tickerd.fleet import Member, MemberExchange
from tickerd.fleet.view import survey
from tickerd.layout import RedisLayout
from tickerd.snapshots import Heartbeat, SourceSnapshot, WriterCounters

FLEET = "pool"
SYMBOLS = ["BTC/USD", "ETH/USD", "SOL/USD"]


def member(
    instance: str, subscribed: list[str], *, assigned: list[str] | None = None, leaving: bool = False
) -> Member:
    """A record of member ``instance``, subscribed to and delivering ``subscribed`` (its share,
    unless ``assigned`` says otherwise)."""
    share = tuple(subscribed if assigned is None else assigned)
    return Member(
        instance=instance,
        host="vm-" + instance,
        pid=100,
        started=time.time() - 60,
        time=time.time(),
        lease=10.0,
        replicas=1,
        leaving=leaving,
        exchanges={
            "kraken": MemberExchange(
                subscribed=tuple(subscribed), delivered=tuple(subscribed), assigned=share
            )
        },
    )


def store(client: redis.Redis, prefix: str, *members: Member, heartbeat: bool = True) -> None:
    """``members``' records (and, unless told otherwise, a running heartbeat of each)."""
    layout = RedisLayout(prefix)
    for m in members:
        client.set(layout.fleet_member(FLEET, m.instance), snapshots.dumps(m), ex=30)
        client.sadd(layout.fleet_members(FLEET), m.instance)
        if heartbeat:
            record = Heartbeat(
                state="running",
                time=time.time(),
                started=m.started,
                pid=m.pid,
                host=m.host,
                version="0.1.0",
                interval=30.0,
                stale_after=60.0,
                exchanges=(),
                writer=WriterCounters(written=0, batches=0, coalesced=0),
                source=SourceSnapshot(kind="toml"),
            )
            client.set(RedisLayout(prefix, instance=m.instance).heartbeat(), snapshots.dumps(record), ex=30)


def fleet_config(tmp_path: Path, prefix: str) -> Path:
    """A configuration of fleet :data:`FLEET` collecting :data:`SYMBOLS` on Kraken."""
    path = tmp_path / "fleet.toml"
    quoted = ", ".join(f'"{s}"' for s in SYMBOLS)
    path.write_text(
        f'[redis]\nurl = "{REDIS_URL}"\nprefix = "{prefix}"\n[fleet]\nname = "{FLEET}"\n'
        f"[exchanges.kraken]\nsymbols = [{quoted}]\n"
    )
    return path


async def status(tmp_path: Path, prefix: str, *args: str) -> tuple[int, str]:
    path = fleet_config(tmp_path, prefix)
    result = await trio.to_thread.run_sync(lambda: run_cli("status", "--config", str(path), *args))
    return result.returncode, result.stdout


def test_the_survey_finds_symbols_owned_by_nobody_and_by_more_than_the_replicas() -> None:
    members = [member("a", ["BTC/USD", "ETH/USD"]), member("b", ["ETH/USD"], assigned=["ETH/USD", "SOL/USD"])]
    view = survey(FLEET, members, 1, {"kraken": SYMBOLS})
    assert view.exchanges["kraken"].desired == 3
    assert view.exchanges["kraken"].unowned == ("SOL/USD",)
    assert view.exchanges["kraken"].over == {"ETH/USD": ("a", "b")}
    assert survey(FLEET, members, 2, {"kraken": SYMBOLS}).over == 0  # two is what replicas = 2 asks
    # The desired set unknown to status (a database): the members' rendezvous shares stand for it.
    unknown = survey(FLEET, members, 1)
    assert unknown.exchanges["kraken"].desired == 3 and unknown.exchanges["kraken"].unowned == ("SOL/USD",)


async def test_a_fleet_with_every_subscription_owned_is_healthy_and_lists_its_members(
    redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    store(redis_client, prefix, member("a", ["BTC/USD", "SOL/USD"]), member("b", ["ETH/USD"]))
    code, out = await status(tmp_path, prefix)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"fleet '{FLEET}': 2 member(s), replicas 1"
    assert next(line for line in lines if line.startswith("INSTANCE")).split() == [
        *("INSTANCE", "HOST", "PID", "LEASE", "AGE", "STATE", "COLLECTS")
    ]
    row = next(line for line in lines if line.startswith("a "))
    assert row.split()[:3] == ["a", "vm-a", "100"] and row.endswith("healthy  kraken 2")
    assert next(line for line in lines if line.startswith("kraken")).split() == ["kraken", "3", "3", "0", "0"]
    assert lines[-1] == "status: healthy"

    code, out = await status(tmp_path, prefix, "--json")
    report = orjson.loads(out)
    assert code == 0 and report["fleet"] == FLEET and report["exit_status"] == 0
    assert [m["instance"] for m in report["members"]] == ["a", "b"]
    assert report["members"][0]["exchanges"] == {"kraken": {"subscribed": 2, "delivered": 2}}
    assert 0 <= report["members"][0]["lease_age"] < 30
    assert report["exchanges"]["kraken"] == {"desired": 3, "owned": 3, "unowned": [], "over_replicated": {}}


async def test_a_subscription_owned_by_nobody_is_degraded_and_one_held_twice_is_shown(
    redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    store(redis_client, prefix, member("a", ["BTC/USD", "ETH/USD"]), member("b", ["ETH/USD"]))
    code, out = await status(tmp_path, prefix)
    assert code == 1, out
    assert "  unowned   kraken SOL/USD" in out and "  over      kraken ETH/USD: a, b" in out
    assert out.splitlines()[-1] == "status: degraded (1 subscription(s) owned by nobody)"
    code, out = await status(tmp_path, prefix, "--json")
    assert orjson.loads(out)["exchanges"]["kraken"]["unowned"] == ["SOL/USD"]


async def test_a_member_without_records_degrades_the_fleet_and_no_member_is_down(
    redis_client: redis.Redis, tmp_path: Path, prefix: str
) -> None:
    code, out = await status(tmp_path, prefix)
    assert code == 2 and f"no member of fleet '{FLEET}' is running" in out
    store(redis_client, prefix, member("a", SYMBOLS))
    store(redis_client, prefix, member("b", [], leaving=True), heartbeat=False)
    code, out = await status(tmp_path, prefix)
    assert code == 1, out
    assert "leaving" in next(line for line in out.splitlines() if line.startswith("b "))
    assert "b: tickerd is not running: no heartbeat" in out.splitlines()[-1]


def test_watch_shows_the_fleets_status_line(redis_client: redis.Redis, tmp_path: Path, prefix: str) -> None:
    path = fleet_config(tmp_path, prefix)
    store(redis_client, prefix, member("a", ["BTC/USD", "ETH/USD"]))
    line = read_summary(redis_client, REDIS_URL, config.load(path))
    assert (
        line
        == f"DEGRADED · fleet '{FLEET}': 1 member(s) · kraken 2/3 owned · 1 subscription(s) owned by nobody"
    )
    store(redis_client, prefix, member("b", ["SOL/USD"]))
    line = read_summary(redis_client, REDIS_URL, config.load(path))
    assert line == f"HEALTHY · fleet '{FLEET}': 2 member(s) · kraken 3/3 owned"
