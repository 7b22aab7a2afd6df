"""deploy/helm/vlserve rendered by Helm's own template engine, for every values file and the main toggles.

Every object must be valid for the Kubernetes API (strict: unknown fields fail) or its CRD; the probes must
name real routes of the app; every metric the autoscalers, the adapter rule and the alerts read must be on
/metrics; the command line must parse with the real `vlserve serve`; each values file must say what its name
and docs/engines/sizing.md say.
"""

from __future__ import annotations

import math
import os
import re
import shlex

import jsonschema
import pytest
import typer.main
import yaml

from tests.deploy.helm import (
    CHART,
    KUBE_VERSIONS,
    VALUES,
    by_kind,
    container,
    flags,
    notes,
    one,
    render,
    server,
    settings,
    validate,
    values_file,
    vllm_args,
)
from tests.deploy.markdown import bash_commands
from tests.deploy.promql import ALERTS, DASHBOARD, ROOT, metric_names
from tests.deploy.test_promql_names import exported, is_exported, prefix  # noqa: F401 (fixtures)
from vlserve.api.health import router as health_router
from vlserve.cli import app as cli
from vlserve.settings import ADMIN_KEY_FORM, Settings

try:
    import helm_python
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("helm-python-sdk is not installed (pip install -e '.[test]')", allow_module_level=True)

WEIGHTS = {"model": {"storage": {"hostPath": "/mnt/models"}}}
FILES = ("h100-fp8", "a10x2-tp2", "ep4", "gateway")
STABLE_SECRET = {"auth": {"existingSecret": "vl-vlserve"}}
TOGGLES = {
    "defaults": WEIGHTS,
    "keda": {**WEIGHTS, "autoscaling": {"mode": "keda"}, "postgresql": {"enabled": True}},
    "hpa-cpu": {
        **WEIGHTS,
        "autoscaling": {"mode": "hpa", "hpa": {"cpuUtilization": 80}},
        "postgresql": {"enabled": True},
    },
    "ingress-tls": {**WEIGHTS, "ingress": {"enabled": True, "tlsSecretName": "vlserve-tls"}},
    "canary": {**WEIGHTS, **STABLE_SECRET, "canary": {"enabled": True, "weight": 20}},
    "database-redis": {**WEIGHTS, "postgresql": {"enabled": True}, "redis": {"enabled": True}, "replicaCount": 2},
    "external-urls": {
        **WEIGHTS,
        "externalDatabase": {"url": "postgresql+psycopg://vlserve:pw@db.example:5432/vlserve"},
        "externalRedis": {"url": "redis://:pw@redis.example:6379/0"},
        "replicaCount": 3,
    },
    "existing-secret": {**WEIGHTS, **STABLE_SECRET, "replicaCount": 2},
    "monitoring": {
        **WEIGHTS,
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "image": {"registry": "registry.example.com/ml", "digest": "sha256:" + "ab" * 32},
    },
    "pvc-subpath": {
        "model": {"storage": {"existingClaim": "weights", "subPath": "qwen"}},
        "data": {"existingClaim": "vlserve-data"},
        "engine": {"vllm": {"extraArgs": ["--limit-mm-per-prompt", '{"image": 2}', "it's"]}},
    },
}
SCENARIOS = {**{name: values_file(name) for name in FILES}, **TOGGLES}


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict]]:
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def test_helm_lints_the_chart_with_every_values_file():
    for values in [WEIGHTS] + [values_file(name) for name in FILES]:
        report = helm_python.lint(CHART, values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], problems or report["errors"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_is_valid_for_kubernetes(rendered, scenario):
    objects = rendered[scenario]
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= {obj["kind"] for obj in objects}
    for obj in objects:
        for version in KUBE_VERSIONS:
            validate(obj, version)


def test_the_schemas_refuse_what_the_api_would_refuse(rendered):
    deployment = server(rendered["defaults"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readonlyRootFilesystem"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment, KUBE_VERSIONS[0])
    scaled = one(rendered["keda"], "ScaledObject")
    scaled["spec"]["triggers"][0]["metricTyp"] = "Value"
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, KUBE_VERSIONS[0])


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({**WEIGHTS, "replicas": 2}, "additional properties 'replicas'"),
        ({**WEIGHTS, "engine": {"mode": "vlm"}}, "/engine/mode"),
        ({**WEIGHTS, "config": {"VLSERVE_ADMIN_KEY": "vlsk_x"}}, "VLSERVE_ADMIN_KEY"),
        ({**WEIGHTS, "image": {"tag": "latest"}}, "/image/tag"),
        ({**WEIGHTS, "autoscaling": {"mode": "keda", "targetQueueUtilization": 0.7}}, "targetQueueUtilization"),
        ({**WEIGHTS, "canary": {"enabled": True}}, "existingSecret"),
        ({}, "model.storage.existingClaim or model.storage.hostPath"),
        ({**WEIGHTS, "replicaCount": 2}, "shared database"),
        ({"engine": {"mode": "remote"}}, "upstreams"),
    ],
)
def test_a_wrong_value_fails_the_render_and_says_where(chart, values, says):
    with pytest.raises(helm_python.HelmError, match=re.escape(says)):
        render(chart, values)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_command_line_parses_with_the_real_cli(rendered, scenario):
    main = container(rendered[scenario])
    assert main["command"] == ["vlserve"] and main["args"][0] == "serve"
    serve = typer.main.get_command(cli).commands["serve"]
    with serve.make_context("serve", list(main["args"][1:])) as context:  # parses, runs nothing
        params = context.params
    assert params["host"] == "0.0.0.0" and params["port"] == 8080
    mode = SCENARIOS[scenario].get("engine", {}).get("mode", "vllm")
    assert params["engine"] == mode


def test_extra_vllm_arguments_reach_vlserve_as_they_were_written(rendered):
    args = container(rendered["pvc-subpath"])["args"]
    assert vllm_args(args) == ["--limit-mm-per-prompt", '{"image": 2}', "it's"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_liveness_and_readiness_probes_are_on_the_named_port(rendered, scenario):
    main = container(rendered[scenario])
    probes = {name: main[f"{name}Probe"]["httpGet"] for name in ("startup", "readiness", "liveness")}
    assert all(probe["port"] == "http" for probe in probes.values())
    assert probes["liveness"]["path"] == "/health/live"
    assert probes["readiness"]["path"] == probes["startup"]["path"] == "/health/ready"
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_every_probe_asks_a_route_the_app_answers(rendered, make_client):
    """Asked of the real app over the fake engine: ready once the engine is loaded, live always."""
    client = make_client()
    paths = {
        container(objects)[f"{name}Probe"]["httpGet"]["path"]
        for objects in rendered.values()
        for name in ("startup", "readiness", "liveness")
    }
    assert paths == {"/health/live", "/health/ready"}
    assert paths <= {route.path for route in health_router.routes}
    assert all(client.get(path).status_code == 200 for path in paths)
    assert client.get("/health/nope").status_code == 404


@pytest.mark.parametrize("name", [n for n in FILES if n != "gateway"] + ["defaults"])
def test_gpu_pods_wait_long_enough_for_a_60_gb_load_and_drain(rendered, name):
    main, pod = container(rendered[name]), server(rendered[name])["spec"]["template"]["spec"]
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    env = settings(rendered[name])
    drain = int(env["VLSERVE_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] >= drain + main["lifecycle"]["preStop"]["sleep"]["seconds"] + 10


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_pod_runs_unprivileged_with_a_read_only_root(rendered, scenario):
    pod = server(rendered[scenario])["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert {"/tmp", "/data", "/home/vlserve"} <= set(mounts)
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    volumes = {v["name"]: v for v in pod["volumes"]}
    if "/models" in mounts:
        assert mounts["/models"]["readOnly"] is True
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory" and mounts["/dev/shm"]


@pytest.mark.parametrize("name", FILES)
def test_each_values_file_asks_for_what_its_name_says(rendered, name):
    main = container(rendered[name])
    args = flags(main["args"])
    gpus = main["resources"]["limits"].get("nvidia.com/gpu", 0)
    expected = {"h100-fp8": 1, "a10x2-tp2": 2, "ep4": 4, "gateway": 0}[name]
    assert gpus == expected == main["resources"]["requests"].get("nvidia.com/gpu", 0)
    if name == "gateway":
        assert args["--engine"] == "remote" and "--model" not in args
        assert "/models" not in {m["mountPath"] for m in main["volumeMounts"]}
        hpa = one(rendered[name], "HorizontalPodAutoscaler")["spec"]
        assert hpa["minReplicas"] >= 2 and "Resource" in {m["type"] for m in hpa["metrics"]}
        return
    assert int(args["--tensor-parallel-size"]) == expected
    fp8 = "FP8" in args["--model"] or args.get("--quantization") == "fp8"
    assert fp8 == (name != "ep4"), "FP8 on 1×H100 and 2×A10; not FP8 at tensor parallel 4"
    assert ("--expert-parallel" in args) == (name == "ep4")
    if expected > 1:
        pod = server(rendered[name])["spec"]["template"]["spec"]
        shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
        assert int(shm.removesuffix("Gi")) >= 16


@pytest.mark.parametrize("name", [n for n in FILES if n != "gateway"])
def test_each_gpu_values_file_matches_a_command_of_the_sizing_section(rendered, name):
    """The model, context, parallelism, quantization and vLLM flags equal one `vlserve serve` line of the docs."""
    keys = ("--model", "--max-model-len", "--tensor-parallel-size", "--expert-parallel", "--quantization")

    def essentials(args: dict, extra: list[str]) -> dict:
        found = {key: args.get(key) for key in keys}
        found["--tensor-parallel-size"] = found["--tensor-parallel-size"] or "1"
        return {**found, "--vllm-args": extra}

    chart_args = container(rendered[name])["args"]
    ours = essentials(flags(chart_args), vllm_args(chart_args))
    sizing = (ROOT / "docs" / "engines" / "sizing.md").read_text()
    commands = []
    for words in bash_commands(sizing):
        if "serve" in words and "--engine" in words:
            words = words[words.index("serve") :]
            commands.append(essentials(flags(words), shlex.split(flags(words).get("--vllm-args") or "")))
    assert ours in commands, f"{name}: {ours} is none of docs/engines/sizing.md's commands"


def test_the_admin_key_is_made_once_in_vlserves_form_or_taken_from_a_secret(chart, rendered):
    secret = one(rendered["defaults"], "Secret")["stringData"]
    assert ADMIN_KEY_FORM.fullmatch(secret["VLSERVE_ADMIN_KEY"])
    assert len(secret["VLSERVE_ADMIN_KEY"]) == len("vlsk_") + 43
    again = one(render(chart, WEIGHTS), "Secret")["stringData"]["VLSERVE_ADMIN_KEY"]
    assert again != secret["VLSERVE_ADMIN_KEY"], "random per install (kept on upgrade through lookup)"
    given = "vlsk_" + "a" * 43
    assert (
        one(render(chart, {**WEIGHTS, "auth": {"adminKey": given}}), "Secret")["stringData"]["VLSERVE_ADMIN_KEY"]
        == given
    )
    objects = rendered["existing-secret"]
    assert not by_kind(objects, "Secret")
    assert {"secretRef": {"name": "vl-vlserve"}} in container(objects)["envFrom"]
    external = one(rendered["external-urls"], "Secret")["stringData"]
    assert external["VLSERVE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "admin API key" in notes(chart, WEIGHTS) and "VLSERVE_ADMIN_KEY" in notes(chart, WEIGHTS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_setting_the_chart_writes_exists(rendered, scenario):
    fields = {f"VLSERVE_{name.upper()}" for name in Settings.model_fields}
    objects = rendered[scenario]
    written = set(settings(objects))
    written |= {key for secret in by_kind(objects, "Secret") for key in secret.get("stringData", {})}
    written |= {e["name"] for e in container(objects)["env"]}
    vlserve = {name for name in written if name.startswith("VLSERVE_")}
    assert vlserve and vlserve <= fields, sorted(vlserve - fields)
    assert written - vlserve <= {
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HOME",
        "PGPASSWORD",
        "REDIS_PASSWORD",
        "password",
    }


def test_the_in_cluster_database_and_redis_are_pinned_and_reached_by_url(rendered):
    objects = rendered["database-redis"]
    images = {
        c["image"]
        for kind in ("StatefulSet", "Deployment")
        for o in by_kind(objects, kind)
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert any(re.fullmatch(r"postgres:17\.\d+", image) for image in images)
    assert any(re.fullmatch(r"redis:7\.\d+\.\d+", image) for image in images)
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["VLSERVE_DATABASE_URL"]["value"] == "postgresql+psycopg://vlserve@vl-vlserve-postgresql:5432/vlserve"
    assert env["VLSERVE_REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@vl-vlserve-redis:6379/")
    assert list(env).index("REDIS_PASSWORD") < list(env).index("VLSERVE_REDIS_URL"), "$(VAR) needs it defined first"


def test_the_network_policy_opens_only_vlserves_port_and_no_egress_by_default(rendered):
    policy = server_policy(rendered["defaults"])
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}] and ingress["from"]
    (dns,) = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    both = next(
        p for p in by_kind(rendered["database-redis"], "NetworkPolicy") if p["metadata"]["name"] == "vl-vlserve"
    )
    assert {p["port"] for rule in both["spec"]["egress"] for p in rule["ports"]} == {53, 5432, 6379}


def server_policy(objects: list[dict]) -> dict:
    return next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "vl-vlserve")


def test_a_canary_release_takes_a_weighted_share_and_never_the_stable_pods(chart, rendered):
    stable = render(chart, {**WEIGHTS, "ingress": {"enabled": True}}, release="vl")
    canary = render(chart, TOGGLES["canary"], release="vl-canary")
    annotations = one(canary, "Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    assert "nginx.ingress.kubernetes.io/canary" not in one(stable, "Ingress")["metadata"]["annotations"]
    assert one(canary, "Ingress")["spec"]["rules"][0]["host"] == one(stable, "Ingress")["spec"]["rules"][0]["host"]
    for service, pods in ((stable, canary), (canary, stable)):
        selector = one(service, "Service")["spec"]["selector"].items()
        assert not selector <= server(pods)["spec"]["template"]["metadata"]["labels"].items()
        assert selector <= server(service)["spec"]["template"]["metadata"]["labels"].items()
    assert container(canary)["envFrom"][1] == {"secretRef": {"name": "vl-vlserve"}}, "the stable release's keys"


def test_the_prometheus_rule_and_the_dashboard_are_the_files_under_deploy(rendered):
    objects = rendered["h100-fp8"]
    rule = one(objects, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    (dashboard,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["vlserve.json"] == DASHBOARD.read_text().rstrip("\n")
    monitor = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert monitor["path"] == "/metrics" and monitor["port"] == "http"
    assert monitor["authorization"]["credentials"] == {"name": "vl-vlserve", "key": "VLSERVE_ADMIN_KEY"}


def test_autoscaling_reads_only_metrics_vlserve_exports(rendered, exported):  # noqa: F811
    queries = {"keda": one(rendered["keda"], "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]}
    adapter = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    for rule in adapter:
        queries[f"adapter {rule['name']['as']}"] = re.sub(r"<<\.\w+>>", "", rule["metricsQuery"])
        queries[f"adapter series {rule['name']['as']}"] = rule["seriesQuery"]
    hpa = one(rendered["hpa-cpu"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    pods_metrics = {m["pods"]["metric"]["name"] for m in hpa if m["type"] == "Pods"}
    assert pods_metrics == {rule["name"]["as"] for rule in adapter}, "the HPA asks for what the adapter serves"
    used = {name: where for where, query in queries.items() for name in metric_names(query)}
    assert {"vlserve_admitted_requests", "vlserve_engine_capacity"} <= set(used)
    assert all(name.startswith("vlserve_") for name in used), "vlserve's own metrics, not vllm:*"
    missing = [f"{name} ({where})" for name, where in used.items() if not is_exported(name, exported)]
    assert not missing, f"queried, but not on /metrics: {missing}"


def test_scale_down_is_slow_for_gpu_pods(rendered):
    hpa = one(rendered["ep4"], "HorizontalPodAutoscaler")["spec"]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600
    keda = one(rendered["keda"], "ScaledObject")["spec"]
    assert (
        keda["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600
    )
    assert math.isclose(float(keda["triggers"][0]["metadata"]["threshold"]), 0.7)


def test_the_values_files_are_all_tested():
    assert sorted(path.stem for path in VALUES.glob("*.yaml")) == sorted(FILES)
