"""The container image and the compose stack, tested as far as a machine without a Docker
daemon allows: hadolint lints the Dockerfile; the paths the Dockerfile copies are in its build
context (``.dockerignore`` is an allow-list); the compose file, loaded as YAML, starts what the
stack needs in order, with an environment tickerd's own configuration loader accepts and ports
that agree from the Dockerfile to Prometheus's scrape target and Grafana's data source; and the
image's health check, run as the container runs it, passes on ``/healthz`` answering 200 only.
"""

from __future__ import annotations

import functools
import json
import re
import runpy
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import yaml

from tests.sources import ROOT, source_files
from tickerd import config as config_module
from tickerd.commands.db import db_init
from tickerd.commands.main import build_parser

DEPLOY = ROOT / "deploy"
HEALTHCHECK_SCRIPT = DEPLOY / "docker" / "healthcheck.py"
SERVICES = {"redis", "postgres", "tickerd-init", "tickerd", "prometheus", "grafana"}


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", (ROOT / "Dockerfile").read_text())
    lines = (line.strip() for line in joined.splitlines())
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def arguments(instruction: str) -> list[str]:
    """An instruction's arguments, in exec form (JSON) or shell words."""
    if instruction.startswith("["):
        words: list[str] = json.loads(instruction)
        return words
    return shlex.split(instruction)


def the(keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction (the one in force)."""
    found = [rest for key, rest in dockerfile() if key == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def _dockerignore_pattern(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` stay within one path segment, ``**`` spans any."""
    out = []
    for token in re.split(r"(\*\*/?|\*|\?)", pattern):
        if token.startswith("**"):
            out.append("(?:.*/)?" if token == "**/" else ".*")
        elif token == "*":
            out.append("[^/]*")
        elif token == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def in_build_context(path: str) -> bool:
    """Whether ``.dockerignore`` lets ``path`` into the build context: the last rule matching
    it or one of its parent directories decides, a ``!`` rule letting it in."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _dockerignore_pattern(line.lstrip("!").strip("/"))))
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def deploy_yaml(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / path).read_text())
    return loaded


def bind_mounts(name: str) -> dict[str, Path]:
    """A service's bind mounts: container path → the repository directory mounted there."""
    mounts = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def metrics_port() -> int:
    """The port the image's daemon serves /metrics and /healthz on (its CMD)."""
    command = arguments(the("CMD"))
    port: int = build_parser(command).parse_args(command).metrics_port
    return port


def published(name: str) -> dict[int, str]:
    """A service's published ports: container port → the host address and port."""
    ports = {}
    for mapping in service(name).get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        ports[int(container)] = host
    return ports


# The Dockerfile


def test_the_dockerfile_lints_clean() -> None:
    hadolint = Path(sysconfig.get_path("scripts")) / "hadolint"
    done = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_image_is_built_in_two_stages_from_slim_python_3_11() -> None:
    """The wheel is built in the first stage; the second takes only the environment it went into."""
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None and base[1].startswith("python:3.11-slim")
    stages = [rest for key, rest in dockerfile() if key == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    assert any("pip wheel" in rest for key, rest in dockerfile() if key == "RUN")
    assert ("COPY", "--from=build /opt/tickerd /opt/tickerd") in dockerfile()


def test_every_path_the_dockerfile_copies_is_in_the_build_context() -> None:
    context = [name for name in source_files() if in_build_context(name)]
    for key, rest in dockerfile():
        if key != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = arguments(rest)
        for source in sources:
            found = [name for name in context if name == source or name.startswith(f"{source.rstrip('/')}/")]
            assert found, f"COPY {source}: not in the build context (.dockerignore) or not in the repository"
    # The whole package goes in (the wheel is built from it), and nothing the image does not need.
    assert {name for name in source_files() if name.startswith("tickerd/")} <= set(context)
    assert not [name for name in context if name.startswith(("tests/", ".git", "bench/", "docs/"))]


def test_the_image_runs_the_daemon_unprivileged_on_the_port_it_exposes_and_checks() -> None:
    user = the("USER").split(":")
    assert all(part.isdigit() and int(part) > 0 for part in user), "a numeric user, not root"
    assert arguments(the("ENTRYPOINT")) == ["tickerd"]
    port = metrics_port()
    assert the("EXPOSE") == str(port)
    options, _, command = the("HEALTHCHECK").partition(" CMD ")
    python, script, url = arguments(command)
    assert python == "python"
    assert ("COPY", f"deploy/docker/healthcheck.py {script}") in dockerfile()
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", port, "/healthz")
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout is not None and runpy.run_path(str(HEALTHCHECK_SCRIPT))["TIMEOUT"] < int(timeout[1])


async def _health_check(url: str) -> subprocess.CompletedProcess[bytes]:
    """The image's health check script, run as the container runs it."""
    return await trio.run_process(
        [sys.executable, HEALTHCHECK_SCRIPT, url], capture_stdout=True, capture_stderr=True, check=False
    )


@pytest.mark.parametrize(
    ("status", "body", "exit_status"),
    [(200, "ok\n", 0), (503, "degraded: kraken: reconnecting\n", 1), (404, "try /metrics or /healthz\n", 1)],
)
async def test_the_health_check_passes_on_200_only_and_says_why(
    status: int, body: str, exit_status: int
) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(4096)):
                head += chunk
            response = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(f"{response}{body}".encode())

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(functools.partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        done = await _health_check(f"http://127.0.0.1:{port}/healthz")
        nursery.cancel_scope.cancel()
    assert done.returncode == exit_status
    if exit_status:
        assert done.stderr.decode() == f"{status}: {body.strip()}\n"


async def test_the_health_check_fails_when_nothing_serves_healthz() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # bound, never listening: refused
    done = await _health_check(f"http://127.0.0.1:{port}/healthz")
    assert done.returncode == 1 and b"refused" in done.stderr.lower()


# compose.yaml


def test_compose_brings_up_the_stack_from_pinned_images() -> None:
    services = compose()["services"]
    assert set(services) == SERVICES
    for name, spec in services.items():
        if "build" in spec:
            assert spec["build"] == "." and (ROOT / "Dockerfile").is_file()
        else:
            image = spec["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
    assert service("tickerd")["image"] == service("tickerd-init")["image"]


def test_compose_starts_tickerd_after_its_servers_are_healthy_and_its_schema_exists() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        needs = spec.get("depends_on", {})
        for other, condition in needs.items() if isinstance(needs, dict) else ((n, {}) for n in needs):
            assert other in services, f"{name} depends on {other}, which is not a service"
            wanted = condition.get("condition", "service_started")
            if wanted == "service_healthy":
                assert "test" in services[other]["healthcheck"], f"{other} has no healthcheck"
            assert wanted in ("service_started", "service_healthy", "service_completed_successfully")
    init = build_parser(service("tickerd-init")["command"]).parse_args(service("tickerd-init")["command"])
    assert init.func is db_init
    assert service("tickerd-init")["restart"] == "no" and service("tickerd-init")["healthcheck"]["disable"]
    assert service("tickerd")["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
        "tickerd-init": {"condition": "service_completed_successfully"},
    }
    # tickerd's own health is the image's HEALTHCHECK on /healthz (compose keeps it).
    assert "healthcheck" not in service("tickerd") and the("HEALTHCHECK")
    assert service("tickerd")["command"] == arguments(the("CMD"))


def test_compose_gives_tickerd_a_valid_configuration_in_database_mode() -> None:
    """tickerd's own loader accepts the environment (database mode: DATABASE_URL), and it
    names the stack's Redis and PostgreSQL services."""
    for name in ("tickerd", "tickerd-init"):
        environment = {key: str(value) for key, value in service(name)["environment"].items()}
        loaded = config_module.load(None, environ=environment)
        assert loaded.database.url is not None and loaded.redis.url is not None
        database, redis_url = urlsplit(loaded.database.url), urlsplit(loaded.redis.url)
        assert (redis_url.hostname, redis_url.port) == ("redis", 6379)
        assert (database.hostname, database.port, database.path) == ("postgres", 5432, "/tickerd")
        postgres = service("postgres")["environment"]
        assert (database.username, database.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        )
        assert postgres["POSTGRES_DB"] == "tickerd"


def test_the_ports_agree_from_the_image_to_prometheus_and_grafana() -> None:
    port = metrics_port()
    assert published("tickerd") == {port: f"127.0.0.1:{port}"}
    for name in SERVICES:
        assert all(host.startswith("127.0.0.1:") for host in published(name).values()), name
    (job,) = deploy_yaml("prometheus/prometheus.yml")["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"tickerd:{port}"]}]
    (source,) = deploy_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert (source["type"], source["uid"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    assert 9090 in published("prometheus")


def test_every_path_compose_mounts_exists_where_the_services_look() -> None:
    prometheus = bind_mounts("prometheus")
    assert prometheus == {"/etc/prometheus": DEPLOY / "prometheus"}
    assert (DEPLOY / "prometheus" / "prometheus.yml").is_file()  # the image's --config.file
    for pattern in deploy_yaml("prometheus/prometheus.yml")["rule_files"]:
        assert "/" not in pattern, "rule files beside prometheus.yml, inside the mount"
    grafana = bind_mounts("grafana")
    assert grafana == {
        "/etc/grafana/provisioning": DEPLOY / "grafana" / "provisioning",
        "/etc/grafana/dashboards": DEPLOY / "grafana",
    }
    assert sorted(path.name for path in (DEPLOY / "grafana" / "provisioning").iterdir()) == [
        "dashboards",
        "datasources",
    ]
    (provider,) = deploy_yaml("grafana/provisioning/dashboards/tickerd.yml")["providers"]
    assert (provider["type"], provider["options"]["path"]) == ("file", "/etc/grafana/dashboards")


def test_promtool_accepts_the_prometheus_configuration() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", "prometheus.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
