# tickerd's container image: `docker build -t tickerd .`, then
#   docker run --rm -e REDIS_URL=redis://redis.example:6379/0 -p 9100:9100 tickerd
# (compose.yaml runs it with Redis, PostgreSQL, Prometheus and Grafana).
#
# Two stages: the first builds tickerd's wheel and installs it, with its dependencies, into a
# virtual environment; the second is a clean slim Python with only that environment, run as an
# unprivileged user. Nothing that built it (the sources, pip's caches) is left in the image.

ARG PYTHON_IMAGE=python:3.11-slim-trixie

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tickerd ./tickerd
# The wheel comes from pip's PEP 517 build (the same setuptools backend as `python -m build`);
# every dependency tickerd needs has binary wheels for this platform, so no compiler is needed.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/tickerd \
    && /opt/tickerd/bin/pip install --no-cache-dir /dist/tickerd-*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="tickerd" \
      org.opencontainers.image.description="Keeps the latest ticker of every configured (exchange, symbol) in Redis" \
      org.opencontainers.image.licenses="MIT"
# A numeric user, so that Kubernetes' runAsNonRoot can verify it; a home for tickerd's state
# directory (~/.local/state/tickerd).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/tickerd tickerd
COPY --from=build /opt/tickerd /opt/tickerd
COPY deploy/docker/healthcheck.py /opt/tickerd/healthcheck.py
ENV PATH="/opt/tickerd/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/tickerd

# /metrics and /healthz (`--metrics-port` below). Change both together, and the health check's
# URL: it probes this port inside the container.
EXPOSE 9100
# /healthz is 200 when healthy and 503 with the reasons otherwise (degraded or down, Redis
# refusing tickerd); the check prints them, so `docker inspect` shows why.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/tickerd/healthcheck.py", "http://127.0.0.1:9100/healthz"]

# tickerd stops cleanly on SIGTERM (docker stop), within its shutdown_grace (5 s by default).
ENTRYPOINT ["tickerd"]
CMD ["run", "--metrics-port", "9100"]
