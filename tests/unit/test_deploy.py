"""The production deployment files agree with the code: pure parsing, no Docker, no cluster.

docker-compose.yml, Dockerfile, .dockerignore and deploy/ (nginx, ClickHouse, Kubernetes) are
read as files and cross-checked against the one settings object (opscenter.settings.Settings)
and the CLI (opscenter.cli.build_parser): every OPSCENTER_* name must be a real setting, every
container must run a real subcommand, and the ports must line up from the app to nginx, the
probes and the Service.
"""

from __future__ import annotations

import argparse
import fnmatch
import http.server
import importlib.util
import re
import shlex
import sys
import threading
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from opscenter.cli import build_parser
from opscenter.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NGINX = DEPLOY / "nginx" / "nginx.conf"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"

REQUIRED_SERVICES = {"kafka", "clickhouse", "redis", "migrate", "worker", "web", "proxy"}
OPSCENTER_SERVICES = {"migrate": "migrate", "worker": "worker", "web": "web"}  # service -> subcommand
ONE_SHOT = {"migrate"}
SETTINGS_ENV = {"OPSCENTER_" + name.upper() for name in Settings.model_fields}
# an OPSCENTER_ name not glued to a longer identifier (APP_IMAGE is not OPSCENTER_*)
ENV_NAME = re.compile(r"(?<![A-Za-z0-9_])OPSCENTER_[A-Z0-9_]*[A-Z0-9]")


# --------------------------------------------------------------------------- helpers


def subcommands() -> set[str]:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    raise AssertionError("opscenter CLI has no subcommands")


def interpolate(value: str) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?message}: defaults kept, the rest 'x'."""

    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        for sep in (":-", "-"):
            if sep in body and not body.split(sep, 1)[0].endswith(":"):
                name, default = body.split(sep, 1)
                if name.isidentifier():
                    return default
        return "x"

    return re.sub(r"\$\{([^}]*)\}", repl, value)


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def tokens(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def settings_from(env: dict[str, str]) -> Settings:
    """Build Settings from OPSCENTER_* values exactly as the process would (type-checked)."""
    kwargs = {k[len("OPSCENTER_"):].lower(): interpolate(v) for k, v in env.items() if k.startswith("OPSCENTER_")}
    return Settings(**kwargs)


def nginx_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    assert m, f"unparseable nginx size {text!r}"
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def nginx_seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text)
    assert m, f"unparseable nginx time {text!r}"
    return int(m.group(1)) * {None: 1, "s": 1, "m": 60, "h": 3600, "ms": 0}[m.group(2)]


def nginx_location(conf: str, prefix: str) -> str:
    m = re.search(r"location\s+" + re.escape(prefix) + r"\s*\{(.*?)\n\s*\}", conf, re.S)
    assert m, f"nginx.conf has no `location {prefix}`"
    return m.group(1)


def k8s_docs() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path, doc


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_docs() if d.get("kind") == kind}


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a match on a parent counts."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        pat = pat.strip("/")
        if any(fnmatch.fnmatchcase(c, pat) or fnmatch.fnmatchcase(c, pat.replace("**/", "")) for c in candidates):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def app_env(compose: dict[str, Any]) -> dict[str, str]:
    return env_of({"environment": compose["x-opscenter-env"]})


@pytest.fixture(scope="module")
def app_settings(app_env: dict[str, str]) -> Settings:
    return settings_from(app_env)


@pytest.fixture(scope="module")
def configmap_env() -> dict[str, str]:
    maps = k8s_objects("ConfigMap")
    assert "opscenter-config" in maps, "deploy/k8s has no ConfigMap opscenter-config"
    return {k: str(v) for k, v in maps["opscenter-config"]["data"].items()}


# --------------------------------------------------------------------------- compose


def test_compose_has_the_production_services(services: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_kafka_runs_kraft_without_zookeeper(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert "zookeeper" not in name.lower(), f"service {name}: KRaft needs no ZooKeeper"
        assert "zookeeper" not in str(svc.get("image", "")).lower(), f"service {name} runs ZooKeeper"
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = env_of(kafka)
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert f"{node_id}@kafka:" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    assert controller not in env["KAFKA_ADVERTISED_LISTENERS"], "controllers are not advertised"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["CLUSTER_ID"], "KRaft storage needs a cluster id"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"].lower() == "false"
    assert any(k in env for k in ("KAFKA_LOG_RETENTION_HOURS", "KAFKA_LOG_RETENTION_MS")), "unbounded retention"
    assert "KAFKA_LOG_RETENTION_BYTES" in env
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in kafka.get("volumes", [])}
    assert env["KAFKA_LOG_DIRS"] in mounts, "Kafka's log dirs must be on a volume"
    assert "/" not in mounts[env["KAFKA_LOG_DIRS"]], "Kafka's log dirs must be on a named volume"
    # the app's bootstrap is the advertised listener
    assert interpolate(services["worker"]["environment"]["OPSCENTER_KAFKA_URL"]) == "kafka://kafka:9092"


def test_dockerfile_entrypoint_is_the_opscenter_cli() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert stages and stages[-1] == "python:3.11-slim", "runtime stage must be python:3.11-slim"
    assert re.search(r'^ENTRYPOINT \["opscenter"\]\s*$', text, re.M)
    assert re.search(r"pip install (--[\w-]+ )*\.(\s|$)", text), "the image installs the project (pip install .)"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the runtime user must not be root"
    assert "/var/lib/opscenter" in text
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    copied = re.findall(r"^COPY\s+(?!--from)(\S+)\s+", text, re.M)
    for src in copied:
        if src != ".":
            assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = ["pyproject.toml", "README.md", "deploy/docker/healthcheck.py"]
    needed += [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    for rel in needed:
        assert not dockerignored(rel, patterns), f".dockerignore excludes {rel}, which the image build needs"
    for rel in (".git", ".venv", "var", ".env"):
        assert dockerignored(rel, patterns), f".dockerignore should exclude {rel}"


def test_opscenter_services_run_real_subcommands(services: dict[str, Any]) -> None:
    commands = subcommands()
    assert {"worker", "web", "migrate"} <= commands
    for name, svc in services.items():
        argv = tokens(svc.get("entrypoint")) + tokens(svc.get("command"))
        for i, tok in enumerate(argv):
            if Path(tok).name == "opscenter":
                assert i + 1 < len(argv) and argv[i + 1] in commands, f"{name}: `{' '.join(argv)}`"
        if "build" in svc or name in OPSCENTER_SERVICES:
            assert "entrypoint" not in svc, f"{name}: keep the image's ENTRYPOINT [\"opscenter\"]"
            cmd = tokens(svc.get("command"))
            assert cmd and cmd[0] in commands, f"{name}: command {cmd} is not an opscenter subcommand"
    for name, sub in OPSCENTER_SERVICES.items():
        assert tokens(services[name]["command"])[0] == sub, f"service {name} must run `opscenter {sub}`"


def test_opscenter_services_share_the_env_anchor(services: dict[str, Any], app_env: dict[str, str]) -> None:
    for name in OPSCENTER_SERVICES:
        assert env_of(services[name]) == app_env, f"{name} must use the x-opscenter-env anchor"
    expected = {
        "OPSCENTER_KAFKA_URL": "kafka://kafka:9092",
        "OPSCENTER_REDIS_URL": "redis://:${REDIS_PASSWORD",
        "OPSCENTER_CLICKHOUSE_DSN": "http://opscenter:${CLICKHOUSE_PASSWORD",
        "OPSCENTER_SECRET_KEY": "${OPSCENTER_SECRET_KEY:?",
        "OPSCENTER_DEMO": "false",
        "OPSCENTER_TOPIC_PARTITIONS": "12",
        "OPSCENTER_HOST": "0.0.0.0",
        "OPSCENTER_WEB_PORT": "8080",
        "OPSCENTER_DATA_DIR": "/var/lib/opscenter",
    }
    for key, start in expected.items():
        assert app_env.get(key, "").startswith(start), f"x-opscenter-env {key}={app_env.get(key)!r}"
    assert app_env["OPSCENTER_REDIS_URL"].endswith("@redis:6379/0")
    assert app_env["OPSCENTER_CLICKHOUSE_DSN"].endswith("@clickhouse:8123")


def test_every_opscenter_env_name_is_a_setting(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for key in env_of(svc):
            if key.startswith("OPSCENTER_"):
                assert key in SETTINGS_ENV, f"service {name}: {key} is not a field of Settings"
    files = [COMPOSE, DOCKERFILE, *sorted(p for p in DEPLOY.rglob("*") if p.is_file())]
    for path in files:
        for found in ENV_NAME.findall(path.read_text(encoding="utf-8")):
            assert found in SETTINGS_ENV, f"{path.relative_to(ROOT)} names {found}, which is not a setting"


def test_compose_env_values_are_valid_settings(app_settings: Settings) -> None:
    assert app_settings.demo is False
    assert app_settings.topic_partitions == 12
    assert app_settings.host == "0.0.0.0"
    assert str(app_settings.data_dir) == "/var/lib/opscenter"
    assert not app_settings.embedded_kafka and not app_settings.embedded_redis
    assert not app_settings.embedded_clickhouse


def test_replicas(services: dict[str, Any], app_settings: Settings) -> None:
    for name in ("worker", "web"):
        replicas = (services[name].get("deploy") or {}).get("replicas", 1)
        assert replicas >= 2, f"{name}: {replicas} replica(s)"
    workers = services["worker"]["deploy"]["replicas"]
    assert workers <= app_settings.topic_partitions, "workers beyond the partition count sit idle"
    for name, svc in services.items():
        assert "container_name" not in svc or name not in ("worker", "web"), f"{name} is replicated"


def test_web_port_is_the_same_everywhere(
    services: dict[str, Any], app_settings: Settings, configmap_env: dict[str, str]
) -> None:
    port = app_settings.web_port
    conf = NGINX.read_text(encoding="utf-8")
    upstream = re.findall(r"^\s*server\s+web:(\d+)\b", conf, re.M)
    assert upstream and {int(p) for p in upstream} == {port}, f"nginx proxies to web:{upstream}, web listens on {port}"
    assert str(port) in [str(p) for p in services["web"].get("expose", [])]
    assert settings_from(configmap_env).web_port == port, "k8s ConfigMap OPSCENTER_WEB_PORT differs from compose"
    web = k8s_objects("Deployment")["opscenter-web"]
    (container,) = web["spec"]["template"]["spec"]["containers"]
    probes = [container[p] for p in ("readinessProbe", "livenessProbe", "startupProbe") if p in container]
    assert {"readinessProbe", "livenessProbe"} <= set(container), "web needs readiness and liveness probes"
    assert all(p["httpGet"]["port"] == port for p in probes), "web probes on the wrong port"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert [p["containerPort"] for p in container["ports"]] == [port]
    service = k8s_objects("Service")["opscenter-web"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port]


def test_worker_port_is_the_same_everywhere(
    services: dict[str, Any], app_settings: Settings, configmap_env: dict[str, str]
) -> None:
    port = app_settings.worker_web_port
    assert settings_from(configmap_env).worker_web_port == port
    worker = k8s_objects("Deployment")["opscenter-worker"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert {"readinessProbe", "livenessProbe"} <= set(container), "worker needs readiness and liveness probes"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["port"] == port, f"worker {probe} on the wrong port"
    assert tokens(services["worker"]["healthcheck"]["test"])[1:] == ["opscenter-healthcheck", "worker"]
    assert tokens(services["web"]["healthcheck"]["test"])[1:] == ["opscenter-healthcheck", "web"]


def test_nginx_proxy(services: dict[str, Any], app_settings: Settings) -> None:
    conf = NGINX.read_text(encoding="utf-8")
    (size,) = re.findall(r"client_max_body_size\s+(\w+);", conf)
    assert nginx_size(size) == app_settings.ingest_max_body_bytes, "nginx body limit != ingest limit"
    ws = nginx_location(conf, "/ws/")
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", ws)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", ws)
    assert "map $http_upgrade $connection_upgrade" in conf
    (read_timeout,) = re.findall(r"proxy_read_timeout\s+(\w+);", ws)
    assert nginx_seconds(read_timeout) >= 600, "WebSockets need long proxy timeouts"
    upstreams = set(re.findall(r"upstream\s+(\w+)\s*\{", conf))
    for target in re.findall(r"proxy_pass\s+http://(\w+)", conf):
        assert target in upstreams
    assert re.search(r"^\s*listen\s+80\b", conf, re.M)
    proxy = services["proxy"]
    assert str(proxy["image"]).startswith("nginx:")
    assert any(str(p).split(":")[-1] == "80" for p in proxy["ports"]), "proxy must publish 80"
    mounts = [str(v).split(":") for v in proxy["volumes"]]
    assert ["./deploy/nginx/nginx.conf", "/etc/nginx/nginx.conf", "ro"] in mounts
    for name in ("web", "worker"):
        assert "ports" not in services[name], f"{name} is reached through the proxy / internal network only"
    ingress = k8s_objects("Ingress")["opscenter"]
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert nginx_size(body) == app_settings.ingest_max_body_bytes
    assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600


def test_long_running_services_have_healthchecks_and_restart(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart", "no") == "no", f"{name} is one-shot"
            continue
        hc = svc.get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart policy"


def test_startup_order(services: dict[str, Any]) -> None:
    migrate = services["migrate"]["depends_on"]
    for dep in ("kafka", "clickhouse"):
        assert migrate[dep]["condition"] == "service_healthy"
    for name in ("worker", "web"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{name} waits for {dep}'s health"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: dict[str, set[str]] = {}
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else str(vol).split(":")[0]
            if source.startswith((".", "/", "~")):
                assert (ROOT / source).exists(), f"{name}: bind mount source {source} is missing"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.setdefault(name, set()).add(source)
    for name in ("kafka", "clickhouse", "redis"):
        assert used.get(name), f"{name} keeps its data on a named volume"
    assert declared <= set().union(*used.values()), "declared volumes that nothing uses"


def test_redis_and_clickhouse_credentials(services: dict[str, Any], app_env: dict[str, str]) -> None:
    redis = services["redis"]
    argv = " ".join(tokens(redis["command"]))
    assert "--appendonly yes" in argv and "--requirepass" in argv
    assert "REDIS_PASSWORD" in argv and "${REDIS_PASSWORD" in app_env["OPSCENTER_REDIS_URL"]
    ch = services["clickhouse"]
    assert str(ch["image"]).startswith("clickhouse/clickhouse-server:")
    assert " ".join(tokens(ch["healthcheck"]["test"])).count("SELECT 1") or "/ping" in str(ch["healthcheck"])
    mounts = dict(str(v).split(":")[:2] for v in ch["volumes"])
    users_files = [src for src, dst in mounts.items() if "/users.d/" in dst]
    assert users_files, "the opscenter user file is not mounted"
    user = ET.parse(ROOT / users_files[0]).getroot().find("users/opscenter")
    assert user is not None, "users.d defines no `opscenter` user"
    pw_var = user.find("password").get("from_env")  # type: ignore[union-attr]
    assert pw_var and pw_var in env_of(ch), f"ClickHouse gets no {pw_var} from compose"
    assert "${CLICKHOUSE_PASSWORD" in env_of(ch)[pw_var]
    assert pw_var not in ("CLICKHOUSE_PASSWORD", "CLICKHOUSE_USER"), "would trigger the image's own user setup"
    for src, dst in mounts.items():
        if src.startswith("./"):
            assert dst.startswith("/etc/clickhouse-server/"), dst
    for path in sorted((DEPLOY / "clickhouse").rglob("*.xml")) + sorted((DEPLOY / "clickhouse-cluster").rglob("*.xml")):
        ET.parse(path)  # well-formed


def test_clickhouse_cluster_variant_is_documented_as_not_exercised() -> None:
    readme = (DEPLOY / "clickhouse-cluster" / "README.md").read_text(encoding="utf-8")
    for needle in ("ON CLUSTER", "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')",
                   "Distributed(", "cityHash64(resource_id)", "non_replicated_deduplication_window", "not exercised"):  # fmt: skip
        assert needle in readme, f"clickhouse-cluster/README.md does not mention {needle!r}"
    cluster = ET.parse(DEPLOY / "clickhouse-cluster" / "cluster.xml").getroot()
    assert cluster.find("remote_servers") is not None and cluster.find("zookeeper") is not None
    assert ET.parse(DEPLOY / "clickhouse-cluster" / "keeper.xml").getroot().find("keeper_server") is not None


# --------------------------------------------------------------------------- kubernetes


def test_k8s_manifests_parse_and_run_real_subcommands() -> None:
    commands = subcommands()
    docs = list(k8s_docs())
    assert docs, "deploy/k8s holds no manifests"
    for path, doc in docs:
        assert "kind" in doc and "apiVersion" in doc, f"{path.relative_to(ROOT)}: not a manifest"
    deployments = k8s_objects("Deployment")
    jobs = k8s_objects("Job")
    expected = {"opscenter-worker": "worker", "opscenter-web": "web"}
    assert set(expected) <= set(deployments)
    workloads = [*deployments.values(), *jobs.values()]
    assert any(tokens(c.get("args"))[:1] == ["migrate"]
               for j in jobs.values() for c in j["spec"]["template"]["spec"]["containers"]), "no migrate Job"  # fmt: skip
    for obj in workloads:
        for c in obj["spec"]["template"]["spec"]["containers"]:
            argv = tokens(c.get("command")) + tokens(c.get("args"))
            if c.get("command"):
                i = [Path(t).name for t in argv].index("opscenter")
                argv = argv[i + 1 :]
            assert argv and argv[0] in commands, f"{obj['metadata']['name']}: {argv} is not a subcommand"
    for name, sub in expected.items():
        dep = deployments[name]
        assert dep["spec"]["replicas"] >= 2, f"{name}: replicas"
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert tokens(container["args"])[0] == sub


def test_k8s_env_names_are_settings_and_refs_resolve() -> None:
    maps, secrets = k8s_objects("ConfigMap"), k8s_objects("Secret")
    for obj in [*maps.values(), *secrets.values()]:
        data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
        for key in data:
            assert key in SETTINGS_ENV, f"{obj['kind']} {obj['metadata']['name']}: {key} is not a setting"
    for obj in [*k8s_objects("Deployment").values(), *k8s_objects("Job").values()]:
        for c in obj["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith("OPSCENTER_"):
                    assert e["name"] in SETTINGS_ENV, e["name"]
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in maps
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets, "Secret template missing"
    settings = settings_from({**next(iter(maps.values()))["data"], **next(iter(secrets.values()))["stringData"]})
    assert settings.demo is False and not settings.embedded_kafka and not settings.embedded_clickhouse


def test_k8s_kustomization_lists_real_files_and_never_the_secret_template() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    for res in kust["resources"]:
        assert (K8S / res).is_file(), f"kustomization lists missing {res}"
        for doc in yaml.safe_load_all((K8S / res).read_text(encoding="utf-8")):
            assert doc is None or doc.get("kind") != "Secret", f"{res}: placeholder secrets must not be applied"


# --------------------------------------------------------------------------- runbook and probe


def test_runbook_marks_missing_kafka_security_as_todo() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for section in ("Sizing", "Backups", "Upgrades", "What to watch", "Security"):
        assert re.search(rf"^#+ .*{section}", text, re.M), f"deploy/README.md has no {section} section"
    if not any("sasl" in f or "ssl" in f or "tls" in f for f in Settings.model_fields):
        security = text[re.search(r"^#+ Security", text, re.M).start() :]  # type: ignore[union-attr]
        assert "SASL" in security and "TODO" in security, "say that Kafka SASL/TLS is not implemented yet"


def _load_probe() -> Any:
    spec = importlib.util.spec_from_file_location("opscenter_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in deploy/
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = before
    return module


def test_healthcheck_probe_exit_codes() -> None:
    probe = _load_probe()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert probe.main(["probe", str(port)]) == 0
        assert probe.main(["probe", str(port), "/readyz"]) == 1
        assert probe.main(["probe", "migrate"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert probe.main(["probe", str(port)]) == 1  # nothing listening any more
    assert set(probe.ROLES) <= subcommands()
