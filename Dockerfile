# The event-sink connector image. Build from the repository root:
#   scripts/image build --tag <your registry>/event-sink:<version>   (buildah; see the README)
#   docker build -t event-sink .                                      (the same Dockerfile)
# BASE is any image with Python 3.11 at python3 and groupadd/useradd: the default, or a
# mirror of it pinned by digest (python:3.11-slim-trixie@sha256:...) for reproducible builds.
ARG BASE=python:3.11-slim-trixie

# --- build: a virtualenv holding the connector and its pinned dependencies ---------------
FROM ${BASE} AS build
# Extra pip arguments, e.g. --no-index --find-links <a wheel directory or URL>, or
# --index-url <your mirror>: how the build reaches packages is the builder's call.
ARG PIP_ARGS=""
# "event-sink-native" adds the native hot path (native/), a wheel built on the host by
# scripts/native that PIP_ARGS must let pip find (scripts/image serves it); empty: the
# image runs on the Python path.
ARG EXTRA_PACKAGES=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python3 -m venv /opt/venv
COPY constraints.txt pyproject.toml README.md ./
COPY connector/ connector/
# Wheels only (every dependency ships manylinux wheels): no compiler in either stage.
# constraints.txt pins the exact versions CI tested; only the runtime dependencies install.
# pip and setuptools leave the venv afterwards: the image runs the connector, not installs.
# hadolint ignore=SC2086
RUN /opt/venv/bin/pip install $PIP_ARGS --only-binary=:all: --constraint constraints.txt . \
      $EXTRA_PACKAGES \
 && /opt/venv/bin/event-sink --version \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -f /opt/venv/bin/pip* /opt/venv/bin/wheel

# --- runtime: the venv, the default schema, a non-root user -------------------------------
FROM ${BASE}
# scripts/image passes the version (pyproject.toml's), the git revision and the source URL
# (the origin remote's, when it is one).
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="event-sink" \
      org.opencontainers.image.description="Kafka sink connector for an event import API" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Numeric uid/gid, the ones the Helm chart's securityContext runs as, so that
# runAsNonRoot can verify them. The base's own pip, setuptools and ensurepip go: nothing in
# the final image installs packages.
RUN groupadd --system --gid 10001 event-sink \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin event-sink \
 && site=$(python3 -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))') \
 && rm -rf "$site"/pip "$site"/pip-* "$site"/setuptools "$site"/setuptools-* \
      "$site"/pkg_resources "$site"/_distutils_hack "$site"/distutils-precedence.pth \
      "$site"/wheel "$site"/wheel-* "$stdlib"/ensurepip /usr/local/bin/pip* \
      /usr/share/python-wheels
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
