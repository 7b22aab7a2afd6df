"""The chart's optional pull Job: `vlserve pull` then `vlserve verify` into the weights claim, before the pods start.

Rendered by Helm's own engine and validated against the Kubernetes schemas like the rest of the chart
(tests/deploy/helm.py); what is asserted is what an operator relies on: the commands and their arguments, the
token from the Secret, the same claim and directory as the server, the hook order, and the egress it is given.
"""

from __future__ import annotations

import os
import re

import pytest
import typer.main

from tests.deploy.helm import KUBE_VERSIONS, by_kind, container, flags, render, server, validate
from vlserve.cli import app as cli

try:
    import helm_python
except ImportError:  # pragma: no cover - the test extra installs it
    if os.environ.get("CI"):
        raise
    pytest.skip("helm-python-sdk is not installed (pip install -e '.[test]')", allow_module_level=True)

CLAIM = {"model": {"dir": "Qwen3-VL-30B-A3B-Instruct-FP8", "storage": {"existingClaim": "weights", "subPath": "hub"}}}
PULL = {
    "enabled": True,
    "model": "qwen3-vl-30b-a3b-fp8",
    "revision": "9c4b3a2e1f0d",
    "endpoint": "https://hf-mirror.com",
    "tokenSecret": {"name": "hf-token"},
}
SCENARIOS = {
    "hub": {**CLAIM, "pull": PULL},
    "modelscope": {**CLAIM, "pull": {"enabled": True, "model": "qwen3-vl-2b", "source": "modelscope"}},
    "modelscope-mirror": {
        **CLAIM,
        "pull": {
            "enabled": True,
            "model": "qwen3-vl-2b",
            "source": "modelscope",
            "endpoint": "https://modelscope.internal",
            "tokenSecret": {"name": "ms-token", "key": "token"},
        },
    },
    "off": CLAIM,
}


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict]]:
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def pull_job(objects: list[dict]) -> dict:
    (job,) = by_kind(objects, "Job")
    return job


def pull_policy(objects: list[dict]) -> dict:
    (policy,) = [p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-pull")]
    return policy


def test_the_pull_job_and_its_policy_are_valid_for_kubernetes(rendered):
    job, policy = pull_job(rendered["hub"]), pull_policy(rendered["hub"])
    for version in KUBE_VERSIONS:
        validate(job, version)
        validate(policy, version)


def test_it_pulls_then_verifies_the_directory_the_server_loads(rendered):
    objects = rendered["hub"]
    pod = pull_job(objects)["spec"]["template"]["spec"]
    (pull,), (verify,) = pod["initContainers"], pod["containers"]
    model = flags(container(objects)["args"])["--model"]
    assert model == "/models/Qwen3-VL-30B-A3B-Instruct-FP8"
    # The image's ENTRYPOINT is `vlserve serve`: both containers replace it.
    assert pull["command"] == verify["command"] == ["vlserve"]
    assert pull["args"] == [
        "pull",
        "qwen3-vl-30b-a3b-fp8",
        "--dir",
        model,
        "--revision",
        "9c4b3a2e1f0d",
        "--source",
        "huggingface",
    ]
    assert verify["args"] == ["verify", model]
    with typer.main.get_command(cli).commands["verify"].make_context("verify", verify["args"][1:]) as context:
        assert str(context.params["directory"]) == model
    assert pull["image"] == verify["image"] == container(objects)["image"], "the GPU image vlserve is in"
    assert pod["restartPolicy"] == "Never"
    ms = pull_job(rendered["modelscope"])["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert ms == ["pull", "qwen3-vl-2b", "--dir", "/models/Qwen3-VL-30B-A3B-Instruct-FP8", "--source", "modelscope"]


def test_the_token_comes_from_the_secret_and_the_mirror_from_the_values(rendered):
    pod = pull_job(rendered["hub"])["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["initContainers"][0]["env"]}
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}},
    }
    assert env["HF_ENDPOINT"]["value"] == "https://hf-mirror.com"
    assert env["HF_HUB_OFFLINE"]["value"] == env["TRANSFORMERS_OFFLINE"]["value"] == "0", "the image sets 1"
    verify_env = {e["name"] for e in pod["containers"][0]["env"]}
    assert not verify_env & {"HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"}, "verify stays offline, without the token"
    anonymous = pull_job(rendered["modelscope"])["spec"]["template"]["spec"]["initContainers"][0]["env"]
    assert not {"HF_TOKEN", "HF_ENDPOINT"} & {e["name"] for e in anonymous}


def test_a_modelscope_mirror_and_token_reach_the_modelscope_client(rendered):
    env = {
        e["name"]: e
        for e in pull_job(rendered["modelscope-mirror"])["spec"]["template"]["spec"]["initContainers"][0]["env"]
    }
    assert env["MODELSCOPE_ENDPOINT"]["value"] == "https://modelscope.internal"
    assert env["MODELSCOPE_API_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "ms-token", "key": "token"}}
    assert not {"HF_TOKEN", "HF_ENDPOINT"} & set(env)


def test_it_writes_the_servers_claim_which_the_pods_still_mount_read_only(rendered):
    objects = rendered["hub"]
    job = pull_job(objects)["spec"]["template"]["spec"]
    pods = server(objects)["spec"]["template"]["spec"]
    (job_volume,) = [v for v in job["volumes"] if v["name"] == "models"]
    (pod_volume,) = [v for v in pods["volumes"] if v["name"] == "models"]
    assert job_volume["persistentVolumeClaim"]["claimName"] == pod_volume["persistentVolumeClaim"]["claimName"]
    assert pod_volume["persistentVolumeClaim"]["readOnly"] is True
    (pod_mount,) = [m for m in pods["containers"][0]["volumeMounts"] if m["name"] == "models"]
    pull_mounts = [m for m in job["initContainers"][0]["volumeMounts"] if m["name"] == "models"]
    verify_mounts = [m for m in job["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert pod_mount["readOnly"] is True
    for (mount,), writable in ((pull_mounts, True), (verify_mounts, False)):
        assert (mount["mountPath"], mount["subPath"]) == (pod_mount["mountPath"], pod_mount["subPath"])
        assert mount["readOnly"] is not writable


def test_it_runs_unprivileged_bounded_and_cleaned_up(rendered):
    spec = pull_job(rendered["hub"])["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    for box in pod["initContainers"] + pod["containers"]:
        assert (
            box["securityContext"]["readOnlyRootFilesystem"] and not box["securityContext"]["allowPrivilegeEscalation"]
        )
        assert box["resources"]["limits"]["memory"] and "nvidia.com/gpu" not in box["resources"]["limits"]
        assert {"/tmp", "/home/vlserve"} <= {m["mountPath"] for m in box["volumeMounts"]}, "writable scratch"
    assert spec["backoffLimit"] >= 1 and spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] > 0


def test_it_runs_before_the_pods_and_after_its_network_policy(rendered):
    objects = rendered["hub"]
    job = pull_job(objects)["metadata"]["annotations"]
    policy = pull_policy(objects)["metadata"]["annotations"]
    assert (
        set(job["helm.sh/hook"].split(",")) == set(policy["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    )
    assert int(policy["helm.sh/hook-weight"]) < int(job["helm.sh/hook-weight"]), "egress is open before the pull"
    assert "before-hook-creation" in job["helm.sh/hook-delete-policy"]
    assert "hook-succeeded" not in job["helm.sh/hook-delete-policy"], "the logs stay until the TTL"
    assert "helm.sh/hook" not in server(objects)["metadata"].get("annotations", {}), "the Deployment is no hook"


def test_the_pull_reaches_https_and_the_server_still_nothing(rendered):
    objects = rendered["hub"]
    pod_labels = pull_job(objects)["spec"]["template"]["metadata"]["labels"].items()
    policy = pull_policy(objects)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels
    assert {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
        (443, "TCP"),
    }
    assert "ingress" not in policy and "Ingress" in policy["policyTypes"]
    (service_policy,) = [p for p in by_kind(objects, "NetworkPolicy") if not p["metadata"]["name"].endswith("-pull")]
    assert not service_policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels
    assert {p["port"] for rule in service_policy["spec"]["egress"] for p in rule["ports"]} == {53}
    (service,) = by_kind(objects, "Service")
    assert not service["spec"]["selector"].items() <= pod_labels, "the Job's pod never receives traffic"


def test_off_by_default_it_renders_nothing(rendered):
    objects = rendered["off"]
    assert not by_kind(objects, "Job")
    assert [p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")] == ["vl-vlserve"]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"model": {"storage": {"hostPath": "/mnt/models"}}, "pull": PULL}, "needs model.storage.existingClaim"),
        ({**CLAIM, "pull": {"enabled": True}}, "needs pull.model"),
        (
            {"engine": {"mode": "remote", "remote": {"upstreams": ["http://vllm.llm.svc:8000/v1"]}}, "pull": PULL},
            "engine.mode remote has none",
        ),
        ({**CLAIM, "pull": {**PULL, "source": "hf"}}, "/pull/source"),
        ({**CLAIM, "pull": {**PULL, "model": "--dir=/etc"}}, "/pull/model"),
    ],
)
def test_a_pull_with_nowhere_to_go_fails_the_render_and_says_why(chart, values, says):
    with pytest.raises(helm_python.HelmError, match=re.escape(says)):
        render(chart, values)


def test_the_documented_pull_fetches_the_checkpoint_its_release_serves():
    """Following docs/deployment/kubernetes.md's pull step pulls the model whose directory the server then loads."""
    from tests.deploy.test_helm_docs import rendered_commands
    from vlserve.models.catalogue import resolve

    pulls = [(line, objects) for line, values, objects in rendered_commands() if values.get("pull", {}).get("enabled")]
    assert pulls, "docs/deployment/kubernetes.md shows a helm install with the pull Job"
    for line, objects in pulls:
        args = pull_job(objects)["spec"]["template"]["spec"]["initContainers"][0]["args"]
        served = flags(container(objects)["args"])["--model"]
        assert args[args.index("--dir") + 1] == served, line
        assert resolve(args[1]).huggingface.split("/")[1] == served.rsplit("/", 1)[1], line
