"""The monitoring files: Prometheus's alert rules and Grafana's dashboard (deploy/).

promtool checks the rules and runs their unit tests; a real Prometheus (Debian's package, which
``scripts/test-deps`` installs) scrapes a real ``tickerd run`` fed by a fake exchange, shows every
dashboard query with data, and fires the stale-symbol alert once the fake goes silent (the rules'
``for:`` shortened in a test copy, Prometheus's intervals too, so it takes seconds).  Every metric
the rules and the dashboard name must exist in a running tickerd's ``/metrics``, and every metric
tickerd exports must be on the dashboard.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import cli_config, make_config, start_daemon, start_fake, wait_health
from tests.processes import daemon_process, free_port
from tests.sources import ROOT
from tests.test_metrics import get, samples, start_metrics
from tickerd.health import EXCHANGE_STATES
from tickerd.testing import FakeKraken
from tickerd.testing.market import lively

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "tickerd-rules.yml"
RULE_TESTS = PROMETHEUS / "tickerd-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tickerd.json"
#: The data source deploy/grafana/provisioning provisions, by the uid dashboards name it with.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
#: What Grafana puts in place of the dashboard's variables, for Prometheus to run its queries:
#: every job, instance and exchange; a rate window of several scrapes of the test's Prometheus.
VARIABLES = {"$__rate_interval": "5s", "$job": ".*", "$instance": ".*", "$exchange": ".*"}
#: Names that look like tickerd's metrics: what the rules and the dashboard refer to.
METRIC_NAME = re.compile(r"\btickerd_[a-z_]+\b")
#: Scrapes and rule evaluations of the test's Prometheus, in seconds.
INTERVAL = 0.5
#: The same in Prometheus's notation.
PROMETHEUS_INTERVAL = f"{INTERVAL * 1000:.0f}ms"


def rules() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    """Every panel of the dashboard, the ones inside collapsed rows included."""
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, its variables as Grafana fills them in."""
    found = [target["expr"] for panel in panels() for target in panel.get("targets", [])]
    for name, value in VARIABLES.items():
        found = [query.replace(name, value) for query in found]
    return found


def strings(value: Any) -> Iterator[str]:
    """Every string in a loaded JSON or YAML document."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, check=False)


# The alert rules


def test_promtool_accepts_the_alert_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_explains_itself() -> None:
    """Each alert has a severity, a summary and a description, and a unit test in which it
    fires (a test that expects only silence would pass on an expression that never holds)."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fired = {
        case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]
    }
    alerts = {rule["alert"] for rule in rules()}
    assert alerts == {
        "TickerdAbsent",
        "TickerdRedisUnreachable",
        "TickerdExchangeDown",
        "TickerdExchangeGaveUp",
        "TickerdSymbolsStale",
        "TickerdSymbolsRejected",
        "TickerdConnectionFlapping",
        "TickerdWriterFallingBehind",
    }
    assert fired == alerts
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


def test_prometheus_yml_loads_the_rules_and_they_watch_its_scrape_job() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    jobs = {match for rule in rules() for match in re.findall(r'job="([^"]*)"', rule["expr"])}
    assert jobs == {job["job_name"]}
    assert any(Path(RULES.name).match(pattern) for pattern in config["rule_files"])
    assert not any(Path(RULE_TESTS.name).match(pattern) for pattern in config["rule_files"]), (
        "Prometheus would load the rules' tests as rules"
    )


# The dashboard


def test_the_dashboard_queries_the_provisioned_prometheus_only() -> None:
    board = dashboard()
    assert board["uid"] == "tickerd" and board["title"] and board["id"] is None
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE, variable["name"]
    # Grafana's own and the dashboard's variables only: the tests know what to put in their place.
    used = {
        name
        for panel in panels()
        for t in panel.get("targets", [])
        for name in re.findall(r"\$\w+", t["expr"])
    }
    assert used == set(VARIABLES)
    assert {f"${v['name']}" for v in board["templating"]["list"]} == used - {"$__rate_interval"}


def test_the_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        cells = {(box["x"] + x, box["y"] + y) for x in range(box["w"]) for y in range(box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses them as the expressions of recording rules (it has no other parser)."""
    recorded = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": query} for n, query in enumerate(queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(recorded))
    done = promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# What a running tickerd exports


async def test_every_metric_the_rules_and_the_dashboard_name_is_exported(
    nursery: trio.Nursery, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    daemon = await start_daemon(nursery, make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}))
    port = await start_metrics(nursery, daemon)
    status, text = await get(port, "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    exported = {family.name for family in families} | {s.name for family in families for s in family.samples}
    named_by_rules = {
        name for rule in rules() for text in strings(rule) for name in METRIC_NAME.findall(text)
    }
    named_by_dashboard = {name for text in strings(dashboard()) for name in METRIC_NAME.findall(text)}
    assert named_by_rules and named_by_rules <= exported, named_by_rules - exported
    assert named_by_dashboard <= exported, named_by_dashboard - exported
    # ... and the dashboard shows every one of them.
    # (``*_created``: prometheus_client's creation times of the histograms, not tickerd's metrics.)
    on_dashboard = "\n".join(queries())
    shown = [f.name for f in families if f.name.startswith("tickerd_") and not f.name.endswith("_created")]
    assert [name for name in shown if name not in on_dashboard] == []


async def test_the_exchange_state_is_one_series_per_state_set_to_1_for_the_current_one(
    nursery: trio.Nursery, prefix: str
) -> None:
    kraken = await start_fake(nursery, FakeKraken())
    config = make_config(prefix, {"kraken": kraken}, {"kraken": ["BTC/USD"]}, feed={"reconnect_delay": 30})
    daemon = await start_daemon(nursery, config)
    port = await start_metrics(nursery, daemon)

    async def states() -> dict[str, float]:
        found = samples((await get(port, "/metrics"))[1])
        return {
            dict(labels)["state"]: value
            for (name, labels), value in found.items()
            if name == "tickerd_exchange_state" and dict(labels)["exchange"] == "kraken"
        }

    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "connected")
    assert await states() == {state: float(state == "connected") for state in EXCHANGE_STATES}
    kraken.refuse = True
    await kraken.drop()
    await wait_health(daemon, lambda h: h.exchanges["kraken"].state == "reconnecting")
    assert await states() == {state: float(state == "reconnecting") for state in EXCHANGE_STATES}


# A real Prometheus scraping a real tickerd


@attrs.frozen
class Prometheus:
    """A Prometheus server of the test's own, and its HTTP API."""

    port: int
    log: Path

    async def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/PATH``'s ``data`` (the API's envelope checked)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        body = await trio.to_thread.run_sync(_read, url)
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]

    async def poll(self, what: str, check: Callable[[], Awaitable[Any]], within: float = 30) -> Any:
        """Ask ``check()`` (an API call) every evaluation interval until it returns something
        true, and return that; fail after ``within`` seconds saying ``what`` was awaited."""
        with trio.move_on_after(within):
            # Prometheus announces nothing: its API is asked again every evaluation interval.
            while not (found := await check()):  # noqa: ASYNC110
                await trio.sleep(INTERVAL)
            return found
        raise AssertionError(f"Prometheus: no {what} within {within} s; its log:\n{self.log.read_text()}")

    async def alerts(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.api("alerts"))["alerts"]
        return [alert for alert in found if alert["labels"]["alertname"] == name]

    async def query(self, query: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self.api("query", query=query))["result"]
        return result


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


def _ready(url: str) -> bool:
    try:
        return _read(url).strip() != b""
    except (urllib.error.URLError, ConnectionError):
        return False


def _test_copy_of_the_rules() -> dict[str, Any]:
    """The rules with every ``for:`` one second: an alert fires within a few evaluations."""
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    for group in loaded["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    return loaded


def _configure(directory: Path, target: int) -> None:
    """deploy/prometheus's configuration in ``directory``, scraping ``127.0.0.1:target`` every
    :data:`INTERVAL`, with the test copy of the rules."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {
        "scrape_interval": PROMETHEUS_INTERVAL,
        "scrape_timeout": PROMETHEUS_INTERVAL,
        "evaluation_interval": PROMETHEUS_INTERVAL,
    }
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{target}"]}]
    directory.mkdir()
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    (directory / RULES.name).write_text(yaml.safe_dump(_test_copy_of_the_rules()))


@asynccontextmanager
async def prometheus(directory: Path, target: int) -> AsyncIterator[Prometheus]:
    """deploy/prometheus's configuration, scraping ``127.0.0.1:target`` every half second, with
    the test copy of the rules, served on a free port until the block ends."""
    _configure(directory, target)
    server = Prometheus(free_port(), directory / "prometheus.log")
    with server.log.open("wb") as log:
        process = await trio.lowlevel.open_process(
            [
                "prometheus",
                "--config.file=prometheus.yml",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{server.port}",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = f"http://127.0.0.1:{server.port}/-/ready"

        async def started() -> bool:
            assert process.returncode is None, f"prometheus exited:\n{server.log.read_text()}"
            return await trio.to_thread.run_sync(_ready, ready)

        await server.poll("readiness", started)
        yield server
    finally:
        process.terminate()
        with trio.move_on_after(10, shield=True):
            await process.wait()
        process.kill()


@asynccontextmanager
async def monitored_tickerd(
    nursery: trio.Nursery, tmp_path: Path, prefix: str
) -> AsyncIterator[tuple[FakeKraken, Prometheus]]:
    """``tickerd run --metrics-port`` fed by a lively fake Kraken (BTC/USD stale after 2 s
    without an update; a silent connection kept for a minute), scraped by a real Prometheus
    that has seen it up and its one symbol fresh."""
    kraken = await start_fake(nursery, FakeKraken())
    nursery.start_soon(lively, kraken, ["BTC/USD"], random.Random(1))
    config = cli_config(tmp_path, kraken.url, prefix)
    with config.open("a") as toml:
        toml.write("[health]\nstale_after = 2.0\n[feed]\nsilence_timeout = 60.0\n")
    port = free_port()
    async with daemon_process(["run", "--config", str(config), "--metrics-port", str(port)]) as daemon:
        await daemon.wait_log(f":{port}/metrics")
        async with prometheus(tmp_path / "prometheus", port) as server:

            async def scraped() -> bool:
                symbols = await server.query('tickerd_symbols{job="tickerd", exchange="kraken"}')
                stale = await server.query('tickerd_stale_symbols{job="tickerd", exchange="kraken"}')
                return [s["value"][1] for s in symbols] == ["1"] and [s["value"][1] for s in stale] == ["0"]

            await server.poll("scrape of tickerd", scraped)
            (active,) = (await server.api("targets"))["activeTargets"]
            assert (active["health"], active["labels"]["job"]) == ("up", "tickerd")
            yield kraken, server


async def test_prometheus_shows_every_dashboard_query_with_data(
    nursery: trio.Nursery, tmp_path: Path, prefix: str
) -> None:
    async with monitored_tickerd(nursery, tmp_path, prefix) as (_, server):
        with trio.move_on_after(30):  # rates need a few scrapes, latencies a few batches
            while empty := [query for query in queries() if not await server.query(query)]:  # noqa: ASYNC110
                await trio.sleep(INTERVAL)
        assert empty == []


async def test_the_stale_symbol_alert_fires_when_the_exchange_goes_silent_and_resolves(
    nursery: trio.Nursery, tmp_path: Path, prefix: str
) -> None:
    async with monitored_tickerd(nursery, tmp_path, prefix) as (kraken, server):
        assert await server.alerts("TickerdSymbolsStale") == []  # fresh: not even pending

        kraken.silent = True

        async def firing() -> list[dict[str, Any]]:
            return [a for a in await server.alerts("TickerdSymbolsStale") if a["state"] == "firing"]

        (alert,) = await server.poll("stale-symbol alert firing", firing)
        assert {key: alert["labels"][key] for key in ("exchange", "job", "severity")} == {
            "exchange": "kraken",
            "job": "tickerd",
            "severity": "warning",
        }
        assert alert["annotations"]["summary"].endswith(": 1 stale symbol(s) on kraken")

        kraken.silent = False

        async def resolved() -> bool:
            return await server.alerts("TickerdSymbolsStale") == []

        await server.poll("stale-symbol alert resolved", resolved)
