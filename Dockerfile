# The event-sink connector image. Build from the repository root:
#   docker build -t event-sink .
# Pin the base by digest in your registry's mirror (FROM python:3.11-slim-trixie@sha256:...)
# for reproducible builds.

# --- build: a virtualenv holding the connector and its pinned dependencies ---------------
FROM python:3.11-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt pyproject.toml README.md ./
COPY connector/ connector/
# Wheels only (every dependency ships manylinux wheels): no compiler in either stage.
# constraints.txt pins the exact versions CI tested; only the runtime dependencies install.
RUN /opt/venv/bin/pip install --only-binary=:all: --constraint constraints.txt . \
 && /opt/venv/bin/event-sink --version

# --- runtime: the venv, the default schema, a non-root user -------------------------------
FROM python:3.11-slim-trixie
# Numeric uid/gid, the ones the Helm chart's securityContext runs as, so that
# runAsNonRoot can verify them.
RUN groupadd --system --gid 10001 event-sink \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin event-sink
COPY --from=build /opt/venv /opt/venv
# source.schema_file defaults to schemas/user_behavior_event.avsc, relative to the working
# directory: /app/schemas/user_behavior_event.avsc here.
COPY schemas/ /app/schemas/
WORKDIR /app
# The root filesystem may be read-only (the chart makes it so): bytecode was compiled at
# install time, and nothing else is written.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# /metrics, /healthz and /readyz (config metrics.port).
EXPOSE 9400
# The config file comes from the Helm chart's ConfigMap (or `docker run -v`); the token from
# http.token_file or EVENT_SINK_TOKEN. SIGTERM drains, commits and exits 0.
ENTRYPOINT ["event-sink", "run", "--config", "/etc/event-sink/config.yaml"]
