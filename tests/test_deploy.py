"""The deployment files: Dockerfile, compose stack, Kubernetes manifests and their configs.

No container engine or cluster runs here, so nothing is built or applied. Every file is
parsed and the files are held against each other: one port (9464) everywhere, the probe
paths, the mounts, the secrets that are referenced and never written down, the labels
that selectors match, and the probe configs loaded by the real loader with the
environment the deployment gives them. Where a file carries a shell snippet (the
HEALTHCHECK, the compose entrypoint, the report CronJob), the snippet is run for real.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from probe.config.loader import load_config
from probe.config.models import Config
from probe.sim.config import MllpDestinationConfig, SqlDestinationConfig, load_sim_config
from probe.transports.http.spec import HttpSource
from probe.transports.mllp.spec import MllpDestination, MllpSource
from probe.transports.sql.spec import SqlDestination
from tests.helpers import closed_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PORT = 9464
UID = 10001
PROJECT_IMAGE = "dataflow-probe"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)
# user:password@ in a URL; the password must be a ${VAR} reference, never a literal.
URL_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]+)@")
ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


# --- reading the files --------------------------------------------------------------------


def yaml_docs(path: Path) -> list[Any]:
    """Every non-empty document of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in k8s_files() for doc in yaml_docs(path)]


def k8s_one(kind: str) -> dict[str, Any]:
    found = [obj for obj in k8s_objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_specs() -> dict[str, dict[str, Any]]:
    """The pod template of every workload, by kind."""
    deployment = k8s_one("Deployment")
    cronjob = k8s_one("CronJob")
    return {
        "Deployment": deployment["spec"]["template"],
        "CronJob": cronjob["spec"]["jobTemplate"]["spec"]["template"],
    }


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def daemon_container() -> dict[str, Any]:
    (container,) = pod_specs()["Deployment"]["spec"]["containers"]
    return container


def compose() -> dict[str, Any]:
    (doc,) = yaml_docs(DEPLOY / "compose.yaml")
    return doc


def interpolate(value: str) -> str:
    """Compose's interpolation with an empty environment: ${VAR:-default}, and $$ -> $."""
    value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


def compose_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of a service's short-syntax volumes."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts.append((source, target, mode == ["ro"]))
    return mounts


def project_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the project's own image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if interpolate(service.get("image", "")).split(":")[0] == PROJECT_IMAGE
    }


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if pending or line.strip():
            logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for entry in logical:
        instruction, _, args = entry.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages  # stages[0] holds what comes before the first FROM (global ARGs)


def final_stage() -> list[tuple[str, str]]:
    return dockerfile()[-1]


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def healthcheck_code() -> str:
    (healthcheck,) = instructions(final_stage(), "HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    argv = yaml.safe_load(command)  # the exec form is a JSON array
    assert argv[:2] == ["python", "-c"], argv
    return str(argv[2])


def string_values(node: Any) -> Iterator[tuple[str, str]]:
    """(key, value) of every string in a parsed YAML tree; list items have key ''."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from string_values(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                yield "", item
            else:
                yield from string_values(item)


def assert_no_password_literal(node: Any, where: str) -> None:
    for key, value in string_values(node):
        for password in URL_PASSWORD.findall(value):
            assert ENV_REFERENCE.match(password), f"{where}: a literal password in {value!r}"
        if SECRET_NAME.search(key) and not key.upper().endswith("_FILE"):
            assert ENV_REFERENCE.match(value) or value.startswith("/run/secrets/"), (
                f"{where}: {key} holds a literal value"
            )


def configmap_config_file(tmp_path: Path) -> Path:
    configmap = k8s_one("ConfigMap")
    path = tmp_path / "probe.yaml"
    path.write_text(configmap["data"]["probe.yaml"], encoding="utf-8")
    return path


def deployment_environ(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: literal values, and a stand-in for each secret."""
    environ = {}
    for entry in container["env"]:
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
        elif "fieldRef" in entry["valueFrom"]:
            environ[entry["name"]] = f"from-field-{entry['valueFrom']['fieldRef']['fieldPath']}"
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            environ[entry["name"]] = f"from-secret-{ref['key']}"
    return environ


def stub_command(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """An environment whose PATH finds a shell stub called `name` first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / name
    stub.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    stub.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C"}


# --- Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_installs_the_built_wheels() -> None:
    stages = dockerfile()[1:]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    build_from = instructions(stages[0], "FROM")[0]
    assert build_from.endswith(" AS build"), build_from
    assert any("pip wheel" in args for args in instructions(stages[0], "RUN"))
    # The runtime installs the wheels from the build stage, offline.
    install = " ".join(instructions(final_stage(), "RUN"))
    assert "from=build" in install
    assert "pip install --no-index" in install
    assert "dataflow-probe" in install


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    users = instructions(final_stage(), "USER")
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric, so that Kubernetes can verify runAsNonRoot"
    assert int(uid) == UID != 0
    assert not gid or int(gid) != 0
    for pod in pod_specs().values():
        assert pod["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerfile_entrypoint_command_and_environment() -> None:
    stage = final_stage()
    assert yaml.safe_load(instructions(stage, "ENTRYPOINT")[-1]) == ["probe"]
    assert yaml.safe_load(instructions(stage, "CMD")[-1]) == ["run"]
    assert env_of(stage)["PROBE_CONFIG"] == "/etc/probe/probe.yaml"
    assert instructions(stage, "EXPOSE") == [str(PORT)]
    assert instructions(stage, "WORKDIR")[-1] == "/var/lib/probe"


def test_dockerfile_has_oci_labels() -> None:
    labels = dict(
        pair.split("=", 1)
        for args in instructions(final_stage(), "LABEL")
        for pair in shlex.split(args)
    )
    for key in ("title", "description", "version", "licenses", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_dockerfile_healthcheck_asks_healthz_on_the_exposed_port() -> None:
    code = healthcheck_code()
    assert f"http://127.0.0.1:{PORT}/healthz" in code
    compile(code, "HEALTHCHECK", "exec")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "healthy"),
    [pytest.param(200, True, id="200"), pytest.param(503, False, id="503")],
)
def test_dockerfile_healthcheck_command_passes_only_on_200(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = healthcheck_code().replace(f":{PORT}/", f":{server.server_address[1]}/")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (result.returncode == 0) is healthy, result.stderr


def test_dockerfile_healthcheck_command_fails_when_nothing_listens() -> None:
    code = healthcheck_code().replace(f":{PORT}/", f":{closed_port()}/")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode != 0


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent wins."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(candidate, body) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_exactly_what_the_build_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    (build,) = [stage for stage in dockerfile()[1:] if stage[0][1].endswith(" AS build")]
    copied = [
        source
        for args in instructions(build, "COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and "__pycache__" not in relative:
                assert not _dockerignore_excludes(relative, patterns), relative
    for unwanted in (
        ".git/HEAD",
        "tests/test_deploy.py",
        "deploy/compose.yaml",
        "probe/__pycache__/cli.cpython-311.pyc",
        "probe-demo.db",
        ".venv/bin/python",
    ):
        assert _dockerignore_excludes(unwanted, patterns), unwanted


# --- compose ------------------------------------------------------------------------------


def test_compose_has_every_service_with_an_image() -> None:
    services = compose()["services"]
    assert set(services) >= {
        "postgres",
        "migrate",
        "probe",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"
        assert ":" in service["image"], f"{name}: pin a tag"
    assert set(project_services()) == {"migrate", "probe", "simulator"}
    for name, service in project_services().items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
        assert interpolate(service["image"]) == f"{PROJECT_IMAGE}:0.1.0", name


def test_compose_migrates_before_the_daemon_starts() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["probe"]["command"] == ["run"]
    depends = services["probe"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["simulator"]["condition"] == "service_healthy"
    assert services["simulator"]["command"] == ["sim", "-c", "/etc/probe/sim.yaml"]
    # The daemon gets longer than shutdown_grace to drain its probes.
    grace = load_config(DEPLOY / "config" / "probe.yaml", environ={"PROBE_DB_PASSWORD": "x"})
    assert int(services["probe"]["stop_grace_period"].removesuffix("s")) > (
        grace.config.shutdown_grace
    )


def test_compose_publishes_9464_and_only_on_loopback() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            host = str(port).partition(":")[0]
            assert host == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert "127.0.0.1:9464:9464" in services["probe"]["ports"]


def test_compose_mounts_the_configs_read_only() -> None:
    for name, service in project_services().items():
        mounts = {target: (source, ro) for source, target, ro in compose_mounts(service)}
        assert mounts["/etc/probe"] == ("./config", True), name
    assert (DEPLOY / "config" / "probe.yaml").is_file()
    assert (DEPLOY / "config" / "sim.yaml").is_file()
    named = set(compose()["volumes"])
    for name, service in compose()["services"].items():
        for source, target, _ in compose_mounts(service):
            if not source.startswith("."):
                assert source in named, f"{name}: volume {source} is not declared"
            assert target.startswith("/"), f"{name}: {target}"


def container_port(service: dict[str, Any]) -> int:
    (published,) = service["ports"]
    return int(str(published).rpartition(":")[2])


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a file a service reads at `container_path` lies in deploy/, by its bind mounts."""
    for source, target, _ in compose_mounts(service):
        if source.startswith(".") and (container_path + "/").startswith(target + "/"):
            return DEPLOY / source / container_path.removeprefix(target).lstrip("/")
    raise AssertionError(f"{container_path} is not bind-mounted")


def test_compose_prometheus_reads_its_config_and_scrapes_the_daemon() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    (flag,) = [arg for arg in prometheus["command"] if arg.startswith("--config.file=")]
    config_file = host_path(prometheus, flag.removeprefix("--config.file="))
    assert config_file == DEPLOY / "prometheus" / "prometheus.yml"
    (config,) = yaml_docs(config_file)
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"probe:{PORT}" in targets
    alertmanagers = [
        target
        for manager in config["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert alertmanagers == [f"alertmanager:{container_port(services['alertmanager'])}"]
    assert config["rule_files"]
    for pattern in config["rule_files"]:
        assert list(config_file.parent.glob(pattern)), f"no rule file {pattern}"


def test_compose_alertmanager_reads_its_config() -> None:
    alertmanager = compose()["services"]["alertmanager"]
    (flag,) = [arg for arg in alertmanager["command"] if arg.startswith("--config.file=")]
    config_file = host_path(alertmanager, flag.removeprefix("--config.file="))
    assert config_file == DEPLOY / "alertmanager" / "alertmanager.yml"
    (config,) = yaml_docs(config_file)
    assert config["route"]["receiver"]


def test_compose_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    datasources = [
        source
        for path in sorted(provisioning.glob("datasources/*.y*ml"))
        for source in yaml_docs(path)[0]["datasources"]
    ]
    prometheus_port = container_port(services["prometheus"])
    assert f"http://prometheus:{prometheus_port}" in [source["url"] for source in datasources]
    providers = [
        provider
        for path in sorted(provisioning.glob("dashboards/*.y*ml"))
        for provider in yaml_docs(path)[0]["providers"]
    ]
    assert providers
    for provider in providers:
        folder = host_path(grafana, provider["options"]["path"])
        assert folder == DEPLOY / "grafana" / "dashboards"
        dashboard = json.loads((folder / "dataflow-probe.json").read_text(encoding="utf-8"))
        assert dashboard["title"]


def test_compose_keeps_the_db_password_in_a_secret() -> None:
    doc = compose()
    assert doc["secrets"]["db_password"]["file"].startswith("./secrets/")
    services = doc["services"]
    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    for name in ("postgres", "migrate", "probe"):
        assert "db_password" in services[name]["secrets"], name
    for name, service in services.items():
        assert_no_password_literal(service, f"compose service {name}")
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: use the mapping form"
    for name in ("probe.yaml", "sim.yaml"):
        assert_no_password_literal(yaml_docs(DEPLOY / "config" / name), name)
    assert "${PROBE_DB_PASSWORD}" in (DEPLOY / "config" / "probe.yaml").read_text("utf-8")


@pytest.mark.parametrize("service", ["migrate", "probe"])
def test_compose_entrypoint_exports_the_secret_file_and_runs_probe(
    tmp_path: Path, service: str
) -> None:
    spec = compose()["services"][service]
    secret = tmp_path / "db_password"
    secret.write_text("s3cret-hex\n", encoding="utf-8")  # the trailing newline is dropped
    argv = [interpolate(part) for part in spec["entrypoint"]]
    argv = [part.replace("/run/secrets/db_password", str(secret)) for part in argv]
    env = stub_command(tmp_path, "probe", 'printf "%s|" "$PROBE_DB_PASSWORD" "$@"')
    result = subprocess.run(
        [*argv, *spec["command"]], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "|".join(["s3cret-hex", *spec["command"]]) + "|"
    assert spec["environment"]["PROBE_CONFIG"] == "/etc/probe/probe.yaml"


def test_compose_probe_config_validates_and_points_at_the_compose_services() -> None:
    loaded = load_config(DEPLOY / "config" / "probe.yaml", environ={"PROBE_DB_PASSWORD": "pw"})
    config = loaded.config
    assert config.server.listen == f"0.0.0.0:{PORT}"
    assert config.store.url == "postgresql+psycopg://probe:pw@postgres:5432/probe"
    assert "pw" in loaded.secrets  # redacted from the logs
    postgres = compose()["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("probe", "probe")

    sim = load_sim_config(DEPLOY / "config" / "sim.yaml")
    assert sim.truth is None, "a stack that runs for days keeps no ground-truth log"
    assert sim.mllp_engine is not None
    (flow, check) = config.flows
    assert isinstance(flow.source, MllpSource)
    assert (flow.source.host, flow.source.port) == ("simulator", sim.mllp_engine.port)
    assert isinstance(check.source, HttpSource)
    assert check.source.url == f"http://simulator:{sim.engine.port}/health"
    assert sim.engine.host == sim.mllp_engine.host == "0.0.0.0"
    for destination in flow.destinations:
        simulated = sim.destinations[destination.name]
        if isinstance(destination, MllpDestination):
            assert isinstance(simulated, MllpDestinationConfig)
            assert simulated.target == f"probe:{destination.listen.rpartition(':')[2]}"
            assert destination.listen.startswith("0.0.0.0:")
        else:
            assert isinstance(destination, SqlDestination)
            assert isinstance(simulated, SqlDestinationConfig)
            assert destination.url == simulated.url
            assert f"FROM {simulated.table} " in destination.query
            # The SQLite file lies on the volume both containers mount.
            folder = destination.url.removeprefix("sqlite+aiosqlite:///").rpartition("/")[0]
            services = compose()["services"]
            for name in ("probe", "simulator"):
                targets = {t: s for s, t, _ in compose_mounts(services[name])}
                assert targets.get(folder) == "landscape", name


def test_sim_ports_are_distinct_from_the_daemon_port() -> None:
    sim = load_sim_config(DEPLOY / "config" / "sim.yaml")
    assert sim.mllp_engine is not None
    assert PORT not in {sim.engine.port, sim.mllp_engine.port}


# --- Kubernetes ---------------------------------------------------------------------------


def test_k8s_manifests_are_well_formed() -> None:
    kinds = []
    for path in k8s_files():
        for doc in yaml_docs(path):
            assert doc.get("apiVersion"), path.name
            assert doc.get("kind"), path.name
            assert doc["metadata"]["name"], path.name
            assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == PROJECT_IMAGE
            assert "namespace" not in doc["metadata"], "kustomization.yaml sets it"
            kinds.append(doc["kind"])
    assert sorted(kinds) == sorted(
        [
            "Namespace",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "ServiceMonitor",
            "PodDisruptionBudget",
            "PersistentVolumeClaim",
            "CronJob",
        ]
    )


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    (kustomization,) = yaml_docs(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in k8s_files()}
    assert listed == on_disk - {"secret.example.yaml"}
    (image,) = kustomization["images"]
    assert image["name"] == PROJECT_IMAGE
    assert str(image["newTag"]) == "0.1.0"
    namespace = k8s_one("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_workload_runs_the_project_image() -> None:
    images = {c["image"] for pod in pod_specs().values() for c in all_containers(pod)}
    assert images == {f"{PROJECT_IMAGE}:0.1.0"}


def test_deployment_runs_two_replicas_with_health_probes() -> None:
    deployment = k8s_one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = daemon_container()
    assert container["args"] == ["run"]
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", PORT)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    (init,) = pod["spec"]["initContainers"]
    assert init["args"] == ["db", "upgrade"]
    assert init["env"] == container["env"]
    assert init["volumeMounts"] == container["volumeMounts"]
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0, "one replica keeps probing during a rollout"


def test_deployment_mounts_the_configmap_at_etc_probe() -> None:
    configmap = k8s_one("ConfigMap")
    assert "probe.yaml" in configmap["data"]
    for kind, pod in pod_specs().items():
        volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
        for container in all_containers(pod):
            env = {entry["name"]: entry for entry in container["env"]}
            assert env["PROBE_CONFIG"]["value"] == "/etc/probe/probe.yaml"
            mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
            config = mounts["/etc/probe"]
            assert config["readOnly"] is True
            source = volumes[config["name"]]["configMap"]["name"]
            assert source == configmap["metadata"]["name"], kind
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, f"{kind}: no volume {mount['name']}"


def test_configmap_config_validates_with_the_deployment_environment(tmp_path: Path) -> None:
    path = configmap_config_file(tmp_path)
    for pod in pod_specs().values():
        for container in all_containers(pod):
            loaded = load_config(path, environ=deployment_environ(container))
            check_k8s_config(loaded.config)
            assert "from-secret-db-password" in loaded.config.store.url
            assert "from-secret-db-password" in loaded.secrets


def check_k8s_config(config: Config) -> None:
    assert config.server.listen == f"0.0.0.0:{PORT}"
    assert config.store.url.startswith("postgresql+psycopg://"), "replicas share PostgreSQL"
    # Replicas share MLLP sightings through the store, which must then be on.
    assert config.store.shared_sightings is not False
    grace = k8s_one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.shutdown_grace


def test_each_replica_is_named_by_its_pod() -> None:
    daemon = k8s_one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert deployment_environ(daemon)["PROBE_NODE"] == "from-field-metadata.name"


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for kind, pod in pod_specs().items():
        spec = pod["spec"]
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, kind
        assert security["runAsUser"] != 0, kind
        assert security["seccompProfile"]["type"] == "RuntimeDefault", kind
        assert spec["automountServiceAccountToken"] is False, kind
        for container in all_containers(pod):
            where = f"{kind}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert resources["requests"]["cpu"], where
            assert resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert "/tmp" in mounts, f"{where}: a writable /tmp on a read-only root"


def test_secrets_are_referenced_never_inlined() -> None:
    example = k8s_one("Secret")
    keys = set(example["stringData"])
    for value in example["stringData"].values():
        assert "CHANGE-ME" in value, "an obvious placeholder"
        assert "example" in value, "an obvious placeholder"
    for kind, pod in pod_specs().items():
        for container in all_containers(pod):
            for entry in container["env"]:
                if SECRET_NAME.search(entry["name"]):
                    assert "value" not in entry, f"{kind}: {entry['name']} is inlined"
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == example["metadata"]["name"]
                    assert ref["key"] in keys
    for obj in k8s_objects():
        if obj["kind"] != "Secret":
            assert_no_password_literal(obj, f"{obj['kind']} {obj['metadata']['name']}")
    assert_no_password_literal(
        yaml.safe_load(k8s_one("ConfigMap")["data"]["probe.yaml"]), "the ConfigMap's probe.yaml"
    )


def test_service_selects_the_daemons_and_not_the_report_jobs() -> None:
    service = k8s_one("Service")
    selector = service["spec"]["selector"].items()
    pods = pod_specs()
    assert selector <= pods["Deployment"]["metadata"]["labels"].items()
    assert not selector <= pods["CronJob"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", PORT, "http")
    named = {p["name"]: p["containerPort"] for p in daemon_container()["ports"]}
    assert named[port["targetPort"]] == PORT


def test_servicemonitor_scrapes_the_service_port() -> None:
    monitor = k8s_one("ServiceMonitor")
    service = k8s_one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # The rules aggregate `without (instance, outcome)`: no other per-replica label.
    assert {"action": "labeldrop", "regex": "pod"} in endpoint["relabelings"]
    # The operator names the job after the Service: the job the rules and compose use.
    assert "jobLabel" not in monitor["spec"]
    (prometheus,) = yaml_docs(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = [
        job["job_name"]
        for job in prometheus["scrape_configs"]
        if f"probe:{PORT}" in job["static_configs"][0]["targets"]
    ]
    assert service["metadata"]["name"] == job
    assert f'up{{job="{job}"}}' in (DEPLOY / "prometheus" / "rules.yml").read_text("utf-8")


def test_pdb_keeps_one_daemon_and_matches_the_deployment() -> None:
    pdb = k8s_one("PodDisruptionBudget")
    deployment = k8s_one("Deployment")
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_report_cronjob_runs_on_the_first_in_copenhagen() -> None:
    cronjob = k8s_one("CronJob")
    spec = cronjob["spec"]
    minute, hour, day, month, weekday = spec["schedule"].split()
    assert (day, month, weekday) == ("1", "*", "*")
    assert minute.isdigit()
    assert 2 <= int(hour) <= 21, "the 1st in UTC as well as in Copenhagen"
    assert spec["timeZone"] == "Europe/Copenhagen"
    zoneinfo.ZoneInfo(spec["timeZone"])
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"OnFailure", "Never"}
    (container,) = pod["containers"]
    script = container["args"][0]
    assert "date -d 'last month' +%Y-%m" in script
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/reports"]]["persistentVolumeClaim"]["claimName"]
    assert claim == k8s_one("PersistentVolumeClaim")["metadata"]["name"]


def _last_month(today: date) -> str:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year}-{month:02d}"


def test_report_cronjob_script_reports_last_month_into_the_volume(tmp_path: Path) -> None:
    container = k8s_one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    calls = tmp_path / "calls"
    env = stub_command(tmp_path, "probe", f'echo "$*" >> {calls}')
    env["TZ"] = "UTC"
    before = _last_month(datetime.now(UTC).date())
    result = subprocess.run(
        [*container["command"], *container["args"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    after = _last_month(datetime.now(UTC).date())
    assert result.returncode == 0, result.stderr
    lines = calls.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    formats = set()
    for line in lines:
        argv = line.split()
        assert argv[:2] == ["report", "--month"]
        month = argv[2]
        assert month in {before, after}
        assert argv[argv.index("-c") + 1] == "/etc/probe/probe.yaml"
        fmt = argv[argv.index("--format") + 1]
        formats.add(fmt)
        assert argv[argv.index("-o") + 1] == f"/reports/dataflow-probe-{month}.{fmt}"
    assert formats == {"html", "json"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_every_manifest_into_the_namespace() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {doc["kind"] for doc in rendered} == {
        obj["kind"] for obj in k8s_objects() if obj["kind"] != "Secret"
    }
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "dataflow-probe", doc["kind"]
