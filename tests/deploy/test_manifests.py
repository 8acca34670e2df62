"""deploy/ stays true to the code: every manifest is parsed and cross-checked against selfheal itself.

Environment variables must be real settings (walked from `Settings` with the `__` delimiter) or
variables the code reads; commands must be CLI subcommands; probe and webhook paths must be API
routes; mounted paths must be the ones the settings files name; Dockerfile COPY sources must exist;
metric names (and the labels grouped by) in the Grafana dashboard and the Prometheus rules must be
in the /metrics output or the code. Where promtool, amtool, kubectl or sh are installed, they
check syntax too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from devstack.temporal_server import free_port
from selfheal.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "kubernetes"
DASHBOARD = DEPLOY / "grafana" / "selfheal-dashboard.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
SECRET_NAME = "selfheal-secrets"


# --- what the code offers ---------------------------------------------------------------------------


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    return []


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    """(variable name, takes nested keys) for every field, nested sections joined by `__`."""
    for name, field in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        nested = _models(field.annotation)
        yield var, get_origin(field.annotation) is dict
        for sub in nested:
            yield from _walk(sub, var + "__")


@cache
def settings_vars() -> dict[str, bool]:
    assert Settings.model_config.get("env_nested_delimiter") == "__"
    return dict(_walk(Settings, str(Settings.model_config.get("env_prefix", ""))))


@cache
def code_vars() -> set[str]:
    """SELFHEAL_* variables the code reads besides settings fields (e.g. SELFHEAL_CONFIG)."""
    pattern = re.compile(r"""(?:envvar=|environ(?:\.get)?\(\s*|environ\[)["'](SELFHEAL_[A-Z0-9_]+)["']""")
    found: set[str] = set()
    for path in (ROOT / "selfheal").glob("*.py"):
        found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def check_env_name(name: str, where: str) -> None:
    if not name.startswith("SELFHEAL_"):
        return
    known = settings_vars()
    if name in known or name in code_vars():
        return
    if any(name.startswith(var + "__") for var, is_dict in known.items() if is_dict):
        return
    raise AssertionError(f"{where}: {name} is not a selfheal setting (nor read by the code)")


@cache
def cli_commands() -> set[str]:
    import typer.main

    from selfheal.cli import app

    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def _settings_for_app() -> Settings:
    return load_settings(
        None,
        env="dev",
        data_dir=str(_tmp_dir() / "data"),
        webhook_token="t",
        temporal={"address": f"127.0.0.1:{free_port()}", "rpc_timeout_seconds": 1},
    )


_WORKDIR: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _workdir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where the app built for these checks keeps its data (pytest cleans it up)."""
    _WORKDIR.append(tmp_path_factory.mktemp("deploy"))


def _tmp_dir() -> Path:
    return _WORKDIR[0]


@cache
def api_routes() -> dict[str, set[str]]:
    from selfheal.api import create_app

    # The OpenAPI document, since app.routes holds the included routers rather than their routes.
    paths = create_app(_settings_for_app()).openapi()["paths"]
    return {path: {method.upper() for method in operations} for path, operations in paths.items()}


@cache
def metrics_output() -> str:
    """GET /metrics from the real app, with one closed incident in its store."""
    from connectors.incident_store import IncidentStore
    from models.incident import Outcome
    from tests.support.app import ApiServer
    from tests.support.loop_metrics import events, make_view

    settings = _settings_for_app()
    store = IncidentStore(settings.store_url)
    store.record(
        make_view(
            "deploy-test",
            Outcome.HEALED,
            playbook="pool-raise",
            runs=["healed"],
            timeline=events((10, "remediation_started"), (20, "verifying"), (30, "remediation_healed")),
            investigation_seconds=1.0,
        ),
        category="capacity",
    )
    store.close()
    with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        # A refused notification labels the webhook counter, so its label names show up too.
        client.post("/api/v1/alerts", content=b"{}", headers={"Authorization": "Bearer t"})
        resp = client.get("/metrics")
        assert resp.status_code == 200
        return resp.text


_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@cache
def known_metrics() -> dict[str, set[str]]:
    """Metric family (base name) → label names, from /metrics; names only found in the code get no labels."""
    families: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics_output()):
        labels = families.setdefault(_base(family.name), set())
        for sample in family.samples:
            labels.update(k for k in sample.labels if k != "le")
    literal = re.compile(r"""["'](selfheal_[a-z0-9_]+)["']""")
    for path in (ROOT / "selfheal").glob("*.py"):
        for name in literal.findall(path.read_text(encoding="utf-8")):
            families.setdefault(_base(name), set())
    return families


_METRIC = re.compile(r"\b(selfheal_[a-z0-9_]+)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\b([a-z_]+)\s*(?:=~|!=|!~|=)\s*\"([^\"]*)\"")
_GENERIC_LABELS = {"le", "job", "instance", "pod", "namespace"}


def check_expr(expr: str, where: str) -> list[str]:
    """The selfheal metrics an expression uses exist, and so do the labels it groups by or matches."""
    names = _METRIC.findall(expr)
    known = known_metrics()
    labels: set[str] = set(_GENERIC_LABELS)
    for name in names:
        assert _base(name) in known, f"{where}: metric {name} is neither in /metrics nor in the code"
        labels |= known[_base(name)]
    if names and all(known[_base(n)] for n in names):
        for group in _GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                assert label in labels, f"{where}: no metric in {names} has label {label!r}"
    for label, value in _MATCHER.findall(expr):
        if label == "route":
            assert value in api_routes(), f"{where}: route={value!r} is not an API route"
    return names


# --- files --------------------------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


def env_file_names(path: Path) -> dict[str, str]:
    """KEY → value of an env file, including commented-out `# KEY=` examples (value "")."""
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            names[m.group(2)] = "" if m.group(1) else m.group(3)
    return names


# --- Dockerfile ---------------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "Dockerfile"


def test_dockerfile_copies_real_paths_and_runs_real_commands() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    stages = [args.split()[-1] for op, args in instructions if op == "FROM" and " AS " in args.upper()]
    assert len([op for op, _ in instructions if op == "FROM"]) >= 3, "multi-stage: uv, build, runtime"
    assert instructions[-1][0] == "CMD"
    copied: list[str] = []
    for op, args in instructions:
        if op != "COPY":
            continue
        parts = shlex.split(args)
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        if source_stage is not None:
            assert source_stage in stages, f"COPY --from={source_stage}: no such stage"
            continue
        for src in paths[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile: COPY {src}: not in the repository"
            copied.append(src.rstrip("/"))
    # Every package the wheel ships is copied into the build.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    packages = re.search(r"packages\s*=\s*\[([^\]]*)\]", pyproject)
    assert packages is not None
    for package in re.findall(r'"([^"]+)"', packages.group(1)):
        assert package in copied, f"pyproject ships {package} but the Dockerfile does not copy it"
    assert "uv.lock" in copied and "pyproject.toml" in copied
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "uv sync --frozen --no-dev" in runs, "dependencies come from uv.lock"

    # The .dockerignore next to it lets every COPY source through.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for src in copied:
        assert src in allowed, f"Dockerfile.dockerignore hides COPY source {src}"

    entry = json.loads(next(args for op, args in instructions if op == "ENTRYPOINT"))
    cmd = json.loads(next(args for op, args in reversed(instructions) if op == "CMD"))
    assert entry[-1] == "selfheal" and cmd[0] in cli_commands()
    user = next(args for op, args in reversed(instructions) if op == "USER")
    assert user.split(":")[0] not in ("0", "root")

    env: dict[str, str] = {}
    for op, args in instructions:
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    for key in env:
        check_env_name(key, "Dockerfile ENV")
    port = env.get("SELFHEAL_PORT", str(Settings.model_fields["port"].default))
    exposed = [args for op, args in instructions if op == "EXPOSE"]
    assert exposed == [port]
    health = next(args for op, args in instructions if op == "HEALTHCHECK")
    path = re.search(r"/[a-z]+z\b", health)
    assert path is not None and path.group(0) == "/healthz" and "/healthz" in api_routes()
    assert "SELFHEAL_PORT" in health and "8080" in health
    data_dir = env["SELFHEAL_DATA_DIR"]
    assert f'VOLUME ["{data_dir}"]' in (DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for op, args in dockerfile_instructions(DOCKERFILE):
        if op == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                if key.startswith("SELFHEAL_"):
                    monkeypatch.setenv(key, value)
    settings = load_settings(None)
    assert settings.host == "0.0.0.0"


# --- compose ------------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return env.get(name) or (m.group(3) if m.group(2) and m.group(2).startswith(":-") else "") or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(:?[-?]([^}]*))?\}", sub, value)


def _compose_env(service: str) -> dict[str, str]:
    env = env_file_names(COMPOSE_DIR / ".env.example")
    raw = compose()["services"][service].get("environment", {})
    assert isinstance(raw, dict), f"{service}: environment must be a mapping"
    return {k: _interpolate(str(v), env) for k, v in raw.items()}


def _mounts(service: str) -> dict[str, Path | str]:
    """container path → host path (bind mounts) or volume name."""
    out: dict[str, Path | str] = {}
    for spec in compose()["services"][service].get("volumes", []):
        source, target, *_ = spec.split(":")
        out[target] = (COMPOSE_DIR / source).resolve() if source.startswith(".") else source
    return out


def test_compose_services_build_run_and_mount_real_things() -> None:
    doc = compose()
    services = doc["services"]
    env_example = env_file_names(COMPOSE_DIR / ".env.example")
    text = (COMPOSE_DIR / "compose.yaml").read_text(encoding="utf-8")
    for name in re.findall(r"\$\{([A-Z0-9_]+)", text):
        assert name in env_example, f"compose.yaml uses ${{{name}}} but .env.example does not list it"
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for target, source in _mounts(name).items():
            if isinstance(source, Path):
                assert source.exists(), f"{name}: mounts {source} which does not exist"
            else:
                assert source in doc["volumes"], f"{name}: unknown volume {source}"
            assert target.startswith("/")
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"]
        command = svc.get("command")
        if svc.get("entrypoint") == ["/bin/sh"]:
            script = command[0]
            host = next(
                Path(src) / Path(script).relative_to(t)
                for t, src in _mounts(name).items()
                if isinstance(src, Path) and script.startswith(t + "/")
            )
            assert host.exists(), f"{name}: runs {script}, not mounted from the repository"
            if shutil.which("sh"):
                subprocess.run(["sh", "-n", str(host)], check=True)
    for name in ("selfheal-api", "selfheal-worker"):
        svc = services[name]
        build = svc["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert svc["command"][0] in cli_commands()
        for key in _compose_env(name):
            check_env_name(key, f"compose {name}")
    for key in env_file_names(COMPOSE_DIR / "selfheal.env.example"):
        check_env_name(key, "compose selfheal.env.example")
    assert services["selfheal-worker"]["command"] == ["worker"]
    assert services["selfheal-worker"]["healthcheck"] == {"disable": True}
    init = services["postgresql"]["volumes"]
    assert any("docker-entrypoint-initdb.d" in v for v in init)
    if shutil.which("sh"):
        subprocess.run(["sh", "-n", str(COMPOSE_DIR / "postgres" / "init-selfheal.sh")], check=True)


@pytest.mark.parametrize("service", ["selfheal-api", "selfheal-worker"])
def test_compose_selfheal_settings_load_and_match_the_mounts(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _compose_env(service)
    mounts = _mounts(service)
    config_path = env.pop("SELFHEAL_CONFIG")
    host_config = mounts[config_path]
    assert isinstance(host_config, Path) and host_config == COMPOSE_DIR / "selfheal.yaml"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(host_config)
    assert str(settings.data_dir) in mounts, "data_dir is a volume"
    for directory in settings.remediation.playbook_dirs:
        assert str(directory) in mounts, f"playbook dir {directory} is not mounted"
        assert isinstance(mounts[str(directory)], Path)
    assert settings.store_url.startswith("postgresql://"), "API replicas and workers share the store"
    host, _, port = settings.temporal.address.partition(":")
    assert host in compose()["services"] and f"{port}:{port}" in compose()["services"][host]["ports"]
    if service == "selfheal-api":
        assert settings.webhook_token is not None and settings.webhook_token.get_secret_value()
        assert f"{settings.port}:{settings.port}" in compose()["services"][service]["ports"]


def test_compose_prometheus_and_alertmanager_point_at_selfheal() -> None:
    services = compose()["services"]
    prom_cfg = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    prom_mounts = _mounts("prometheus")
    flag = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    assert prom_mounts[flag.split("=", 1)[1]] == COMPOSE_DIR / "prometheus.yml"
    for rule_file in prom_cfg["rule_files"]:
        assert prom_mounts[rule_file] == RULES
    jobs = {j["job_name"]: j for j in prom_cfg["scrape_configs"]}
    api_port = load_settings(COMPOSE_DIR / "selfheal.yaml").port
    selfheal_job = jobs["selfheal"]
    assert selfheal_job["metrics_path"] in api_routes()
    assert selfheal_job["static_configs"][0]["targets"] == [f"selfheal-api:{api_port}"]
    am_target = prom_cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert am_target.split(":")[0] in services and f"{am_target.split(':')[1]}:9093" in str(
        services["alertmanager"]["ports"]
    )

    am_mounts = _mounts("alertmanager")
    flag = next(a for a in services["alertmanager"]["command"] if a.startswith("--config.file="))
    assert am_mounts[flag.split("=", 1)[1]] == COMPOSE_DIR / "alertmanager.yml"
    am = yaml.safe_load((COMPOSE_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
    hook = _selfheal_webhook(am)
    assert hook["url"] == f"http://selfheal-api:{api_port}/api/v1/alerts"
    secret = services["alertmanager"]["secrets"][0]
    assert hook["http_config"]["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    # The secret is the very token the API checks.
    assert compose()["secrets"][secret] == {"environment": "SELFHEAL_WEBHOOK_TOKEN"}
    assert "SELFHEAL_WEBHOOK_TOKEN" in services["selfheal-api"]["environment"]


# --- Alertmanager and Prometheus rules ------------------------------------------------------------------


def _selfheal_webhook(config: dict[str, Any]) -> dict[str, Any]:
    receivers = {r["name"]: r for r in config["receivers"]}
    assert config["route"]["receiver"] == "selfheal"
    hooks = receivers["selfheal"]["webhook_configs"]
    assert len(hooks) == 1
    hook: dict[str, Any] = hooks[0]
    return hook


@pytest.mark.parametrize(
    "path", [DEPLOY / "alertmanager" / "alertmanager.yml", COMPOSE_DIR / "alertmanager.yml"], ids=str
)
def test_alertmanager_configs_notify_selfheal_the_same_way(path: Path) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    hook = _selfheal_webhook(config)
    url = re.match(r"^http://([^/:]+):(\d+)(/.*)$", hook["url"])
    assert url is not None, hook["url"]
    assert "POST" in api_routes()[url.group(3)]
    assert hook["send_resolved"] is True
    # A full body at max_alerts (1,115 bytes per kube-prometheus alert, bench/webhook_size.py, plus
    # room for longer labels) fits selfheal's default limit: Alertmanager never retries a 413.
    assert 0 < hook["max_alerts"] * 1115 * 1.4 < Settings.model_fields["max_body_bytes"].default
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/")
    if path.parent.name == "alertmanager":
        assert int(url.group(2)) == Settings.model_fields["port"].default
    # selfheal's own alerts go to people, not back into selfheal.
    own = [r for r in config["route"].get("routes", []) if 'component="selfheal"' in r.get("matchers", [])]
    assert own and own[0]["receiver"] != "selfheal"
    assert own[0]["receiver"] in {r["name"] for r in config["receivers"]}
    if shutil.which("amtool"):
        subprocess.run(["amtool", "check-config", str(path)], check=True, capture_output=True)


def test_prometheus_rules_use_real_metrics_and_route_selfheal_alerts_to_people() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    used: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            names = check_expr(rule["expr"], f"rules.yml {rule.get('alert')}")
            used.update(names)
            if names or 'job="selfheal"' in rule["expr"]:
                assert rule["labels"]["component"] == "selfheal", (
                    f"{rule['alert']} must be component=selfheal"
                )
    assert used, "the rules watch selfheal itself"
    jobs = {
        j["job_name"] for j in yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())["scrape_configs"]
    }
    for group in rules["groups"]:
        for rule in group["rules"]:
            for job in re.findall(r'job="([^"]+)"', rule["expr"]):
                assert job in jobs, f"{rule['alert']}: job {job} is not scraped in the compose stack"
    if shutil.which("promtool"):
        subprocess.run(["promtool", "check", "rules", str(RULES)], check=True, capture_output=True)


# --- Kubernetes ---------------------------------------------------------------------------------------


@cache
def k8s_objects(layer: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → object of every resource file a kustomization lists (no generators)."""
    root = K8S / layer
    kust = yaml.safe_load((root / "kustomization.yaml").read_text(encoding="utf-8"))
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kust.get("resources", []):
        path = root / resource
        assert path.exists(), f"{layer}: resource {resource} does not exist"
        if path.is_dir():
            continue
        for doc in load_yaml_docs(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _kustomization(layer: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / layer / "kustomization.yaml").read_text(encoding="utf-8"))
    return doc


def _generated(name: str) -> list[Path]:
    for gen in _kustomization("base").get("configMapGenerator", []):
        if gen["name"] == name:
            return [K8S / "base" / f for f in gen["files"]]
    raise AssertionError(f"no configMapGenerator {name}")


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _volume_mounts(deployment: dict[str, Any]) -> dict[str, str]:
    """mountPath → ConfigMap name (or "" for other volumes)."""
    volumes = {
        v["name"]: v.get("configMap", {}).get("name", "")
        for v in deployment["spec"]["template"]["spec"]["volumes"]
    }
    return {m["mountPath"]: volumes[m["name"]] for m in _container(deployment)["volumeMounts"]}


def test_kustomize_base_files_exist_and_playbooks_lint() -> None:
    kust = _kustomization("base")
    for gen in kust["configMapGenerator"]:
        for file in gen["files"]:
            assert (K8S / "base" / file).is_file(), f"configMapGenerator {gen['name']}: {file} missing"
    from playbooks.loader import check_paths

    files = _generated("selfheal-playbooks")
    assert files, "the playbooks ConfigMap carries at least one playbook"
    report = check_paths(files)
    assert not report.errors, report.errors
    assert len(report.playbooks) == len(files)
    # Every playbook file in the directory is in the ConfigMap.
    on_disk = sorted((K8S / "base" / "playbooks").glob("*.y*ml"))
    assert sorted(files) == on_disk


@pytest.mark.parametrize("component", ["api", "worker"])
def test_kubernetes_deployments_match_settings_cli_and_routes(
    component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = k8s_objects("base")
    deployment = objects[("Deployment", f"selfheal-{component}")]
    container = _container(deployment)
    assert container["args"][0] in cli_commands() and container["args"] == [component]
    assert container["image"] == "selfheal"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    env: dict[str, str] = {}
    secret_keys: dict[str, dict[str, Any]] = {}
    for item in container["env"]:
        check_env_name(item["name"], f"k8s {component}")
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME
            secret_keys[item["name"]] = ref
    documented = (K8S / "base" / "kustomization.yaml").read_text(encoding="utf-8")
    for ref in secret_keys.values():
        assert f"--from-literal={ref['key']}=" in documented, f"secret key {ref['key']} is not documented"
    assert not secret_keys["SELFHEAL_EVIDENCE__STORE_URL"].get("optional")

    mounts = _volume_mounts(deployment)
    config_path = Path(env.pop("SELFHEAL_CONFIG"))
    assert mounts[str(config_path.parent)] == "selfheal-config"
    (config_file,) = _generated("selfheal-config")
    assert config_file.name == config_path.name
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for name, ref in secret_keys.items():
        if not ref.get("optional"):
            monkeypatch.setenv(name, "postgresql://u:p@db:5432/selfheal" if "STORE" in name else "secret")
    settings = load_settings(config_file)
    assert str(settings.data_dir) in mounts
    assert settings.tracker.kind == "jira", "replicas share no disk: tickets live in Jira"
    assert settings.store_url.startswith("postgresql://")

    if component == "api":
        assert not secret_keys["SELFHEAL_WEBHOOK_TOKEN"].get("optional")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == settings.port
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        assert (live["path"], ready["path"]) == ("/healthz", "/readyz")
        for probe in (live, ready):
            assert probe["path"] in api_routes() and probe["port"] in ports
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == settings.port
        assert annotations["prometheus.io/path"] in api_routes()
        service = objects[("Service", "selfheal-api")]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
        assert "replicas" in deployment["spec"]
    else:
        for directory in settings.remediation.playbook_dirs:
            assert mounts.get(str(directory)) == "selfheal-playbooks", f"{directory} is not the ConfigMap"
        assert settings.remediation.playbook_dirs
        assert "replicas" not in deployment["spec"], "the HPA owns the worker's replica count"
        hpa = objects[("HorizontalPodAutoscaler", "selfheal-worker")]
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", "selfheal-worker")
        assert "readinessProbe" not in container and "livenessProbe" not in container


def test_kubernetes_production_overlay_targets_real_objects() -> None:
    base = k8s_objects("base")
    prod = k8s_objects("overlays/production")
    kust = _kustomization("overlays/production")
    assert "../../base" in kust["resources"]
    for image in kust["images"]:
        assert image["name"] == "selfheal" and image["newTag"]
    for replica in kust["replicas"]:
        assert ("Deployment", replica["name"]) in base
    for patch in kust["patches"]:
        if "path" in patch:
            for doc in load_yaml_docs(K8S / "overlays" / "production" / patch["path"]):
                deployment = base[(doc["kind"], doc["metadata"]["name"])]
                names = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    assert c["name"] in names
        else:
            assert (patch["target"]["kind"], patch["target"]["name"]) in base
    pdbs = [obj for (kind, _), obj in prod.items() if kind == "PodDisruptionBudget"]
    assert {p["metadata"]["name"] for p in pdbs} == {"selfheal-api", "selfheal-worker"}
    for pdb in pdbs:
        deployment = base[("Deployment", pdb["metadata"]["name"])]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("layer", ["base", "overlays/production"])
def test_kustomize_builds(layer: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / layer)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {
        (
            d["kind"],
            d["metadata"]["name"].rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else d["metadata"]["name"],
        )
        for d in docs
    }
    assert ("ConfigMap", "selfheal-config") in kinds and ("ConfigMap", "selfheal-playbooks") in kinds
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for d in docs:
        if d["kind"] == "Deployment":
            for v in d["spec"]["template"]["spec"]["volumes"]:
                if "configMap" in v:
                    assert v["configMap"]["name"] in configmaps, "generated names are wired through"
            if layer != "base":
                assert d["metadata"]["namespace"] == "selfheal"
                assert _container(d)["image"].startswith("ghcr.io/")


# --- Grafana --------------------------------------------------------------------------------------------


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels", []))


def test_grafana_dashboard_queries_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used: set[str] = set()
    exprs: list[str] = []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            exprs.append(expr)
            used.update(_base(n) for n in check_expr(expr, f"dashboard panel {panel['title']!r}"))
            for var in re.findall(r"\$(\w+)", expr):
                assert var.startswith("__") or var in variables, f"{panel['title']}: unknown variable ${var}"
    # The dashboard covers every metric of the loop and the webhook.
    for name in (
        "selfheal_incidents",
        "selfheal_self_healing_success_ratio",
        "selfheal_alert_to_deployed_seconds",
        "selfheal_alert_to_verified_seconds",
        "selfheal_playbook_runs",
        "selfheal_investigation_seconds",
        "selfheal_open_incidents",
        "selfheal_webhook_notifications",
        "selfheal_http_request_seconds",
    ):
        assert name in used, f"the dashboard shows nothing of {name}"
    if shutil.which("promtool"):
        _promtool_parses(exprs)


def _promtool_parses(exprs: list[str]) -> None:
    """PromQL syntax, via promtool on recording rules made of the panel queries."""
    import tempfile

    subs = {"$__rate_interval": "1m", "$__range": "1h", "$window": "7d", "$job": ".+"}
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in subs.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    try:
        proc = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        Path(f.name).unlink()


def test_the_checks_catch_drift() -> None:
    """The helpers above fail on made-up names, so the tests cannot pass vacuously."""
    with pytest.raises(AssertionError):
        check_env_name("SELFHEAL_TEMPORAL__ADDRES", "drift")
    with pytest.raises(AssertionError):
        check_env_name("SELFHEAL_WEBHOOK_TOKENS", "drift")
    check_env_name("SELFHEAL_REMEDIATION__REPOS__CONFIG__PATH", "dict sections take nested keys")
    check_env_name("SELFHEAL_CONFIG", "read by the CLI")
    with pytest.raises(AssertionError):
        check_expr("rate(selfheal_incidents_totl[5m])", "drift")
    with pytest.raises(AssertionError):
        check_expr("sum by (outcomes) (selfheal_incidents_total)", "drift")
    with pytest.raises(AssertionError):
        check_expr('selfheal_http_request_seconds_count{route="/api/v1/alert"}', "drift")
    assert "healthz" not in cli_commands() and "worker" in cli_commands()
    assert sys.version_info >= (3, 11)
