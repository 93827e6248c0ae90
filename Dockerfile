# dataflow-probe: a non-root image running `probe run`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY probe ./probe
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/probe --create-home probe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER probe
WORKDIR /var/lib/probe
ENV PROBE_CONFIG=/etc/probe/probe.yaml
EXPOSE 9464
# The config must listen on 0.0.0.0:9464 inside a container for the port to be reachable.
ENTRYPOINT ["probe"]
CMD ["run"]
