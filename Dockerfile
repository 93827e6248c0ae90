# syntax=docker/dockerfile:1
# dataflow-probe: a non-root image whose entrypoint is `probe` and whose default command
# is `probe run -c $PROBE_CONFIG`.
#
#   docker build -t dataflow-probe:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run -v ./probe.yaml:/etc/probe/probe.yaml:ro -p 9464:9464 dataflow-probe:0.1.0
#
# The config must set `server.listen: 0.0.0.0:9464` for the port to be reachable from outside
# the container. The same image runs the other commands: `probe db upgrade`, `probe report`,
# `probe sim -c FILE`. See deploy/README.md for compose and Kubernetes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: one wheel for the project and one for every dependency -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY config ./config
COPY probe ./probe
# tzdata: the IANA zones for `timezone:` even where the slim base lacks /usr/share/zoneinfo.
RUN pip wheel --wheel-dir /wheels . tzdata

# --- runtime: the wheels installed into a slim Python, no build tools ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="dataflow-probe" \
      org.opencontainers.image.description="Probes hospital integrations end to end: injects tagged HL7/HTTP/SQL messages, observes their arrival, and reports delivery, latency and availability." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="deploy/README.md" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_NO_CACHE_DIR=1
# The wheels are bind-mounted from the build stage, so no layer keeps a copy of them.
# --no-index: the versions are the wheels the build stage made, nothing else can come in.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels dataflow-probe tzdata \
    && probe --version \
    && python -c "import zoneinfo; zoneinfo.ZoneInfo('Europe/Copenhagen')"
# uid/gid 10001, numeric below so that Kubernetes can verify runAsNonRoot. /var/lib/probe is
# the working folder, owned by probe: a relative SQLite store or report lands there. A new
# named volume mounted on it takes that owner (compose's `landscape` volume relies on it).
RUN groupadd --system --gid 10001 probe \
    && useradd --system --uid 10001 --gid probe --home-dir /var/lib/probe --create-home \
       --shell /usr/sbin/nologin probe \
    && mkdir -p /etc/probe
USER 10001:10001
WORKDIR /var/lib/probe
ENV PROBE_CONFIG=/etc/probe/probe.yaml
EXPOSE 9464
# slim has no curl: Python asks /healthz. It assumes the config listens on port 9464 (on
# 0.0.0.0 or 127.0.0.1); other commands than `run` (sim, report) override or ignore it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3)"]
# SIGTERM drains the probes in flight for up to `shutdown_grace` (default 30s): give the
# container at least that long to stop (compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["probe"]
CMD ["run"]
