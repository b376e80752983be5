"""docker/kubernetes: each overlay rendered by kustomize (`kubectl kustomize`), every object
checked against the Kubernetes schema (kubernetes-validate), KEDA's ScaledObjects against
KEDA's own CRD schema (jsonschema), and the manifests against the farm they deploy: its CLI,
settings, pool files and queue names."""

from __future__ import annotations

import copy
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from inference_farm.broker.names import model_queue
from inference_farm.broker.queues import _lists
from inference_farm.cli.main import cli
from inference_farm.settings import CONFIG_VAR, load_settings
from inference_farm.worker.pool_files import load_pool

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "docker" / "kubernetes"
OVERLAYS = ("cpu", "gpu")
KEDA_CRD = ROOT / "tests" / "data" / "keda" / "keda.sh_scaledobjects.yaml"
# The Kubernetes release whose schemas the objects must match (strict: no unknown fields).
KUBERNETES_VERSION = "1.30.0"
IMAGE = re.compile(r"localhost/inference-farm-(api|worker-cpu|worker-gpu):dev")
UID = 10001
URL_KEYS = {
    "INFERENCE_FARM_BROKER_URL",
    "INFERENCE_FARM_RESULT_BACKEND",
    "INFERENCE_FARM_DATABASE_URL",
    "INFERENCE_FARM_STORAGE_URL",
}


def _missing(what: str, reason: str) -> None:
    # Skipping is a local convenience only: CI must run every test.
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required when CI is set: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        _missing(name, f"{exc} (it is in the dev extra)")


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        _missing("kubectl", "not on PATH (Debian: apt-get install kubernetes-client)")
    return str(found)


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize folder` prints."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(KUBERNETES / "overlays" / overlay))


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The rendered objects of one overlay (a fresh copy for each test)."""
    return copy.deepcopy(list(_rendered(request.param)))


def kind(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == name]


def named(objects: list[dict[str, Any]], name: str, obj_kind: str) -> dict[str, Any]:
    found = [o for o in kind(objects, obj_kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {obj_kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def workers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        obj
        for obj in kind(objects, "Deployment")
        if obj["spec"]["template"]["spec"]["containers"][0]["command"][1] == "worker"
    ]


def config_map(objects: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [o for o in kind(objects, "ConfigMap") if o["metadata"]["name"].startswith(prefix)]
    assert len(found) == 1, f"expected one ConfigMap {prefix}-<hash>, found {len(found)}"
    return found[0]


def secret(objects: list[dict[str, Any]]) -> dict[str, str]:
    return dict(named(objects, "inference-farm-urls", "Secret")["stringData"])


def pool_of(objects: list[dict[str, Any]], deployment: dict[str, Any], tmp: Path) -> Any:
    """The pool a worker Deployment runs: its --pool file, read from the pools ConfigMap."""
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["inference-farm", "worker", "--pool"], command
    path = Path(command[3])
    pools = config_map(objects, "inference-farm-pools")
    assert path.parent == Path("/etc/inference-farm/pools"), path
    assert path.name in pools["data"], f"{path.name} is not in the pools ConfigMap"
    local = tmp / path.name
    local.write_text(pools["data"][path.name], encoding="utf-8")
    return load_pool(local)


def pod_settings(objects: list[dict[str, Any]], container: dict[str, Any], tmp: Path) -> Any:
    """The farm's Settings as a container sees them: its settings file and its environment."""
    env = {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
    for source in container.get("envFrom", []):
        assert source["secretRef"]["name"] == "inference-farm-urls", source
        env.update(secret(objects))
    config = Path(env[CONFIG_VAR])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert str(config.parent) in mounts, f"{config} is not on a mounted volume"
    local = tmp / config.name
    local.write_text(config_map(objects, "inference-farm-settings")["data"][config.name])
    return load_settings({**env, CONFIG_VAR: str(local)})


# Kubernetes and KEDA schemas.


def test_every_object_matches_the_kubernetes_schema(objects: list[dict[str, Any]]) -> None:
    kubernetes_validate = module("kubernetes_validate")
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # not a Kubernetes kind: test_scaled_objects_match_kedas_crd
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {exc.message} at {exc.path}")
        checked += 1
    assert checked >= 12


def keda_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KEDA_CRD.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return _structural(version["schema"]["openAPIV3Schema"])


def _structural(schema: Any) -> Any:
    """schema, closed where it names its properties: the API server prunes a field the
    schema does not know, so a misspelt field would vanish silently; here it fails."""
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _structural(value) for key, value in schema.items()}
    known = "properties" in schema and "additionalProperties" not in schema
    if known and not schema.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


def keda_errors(obj: dict[str, Any]) -> list[str]:
    jsonschema = module("jsonschema")
    validator = jsonschema.Draft7Validator(keda_schema())
    errors = [f"{e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(obj)]
    spec = obj.get("spec", {})  # the CRD's one CEL rule, which jsonschema cannot run
    if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
        errors.append("minReplicaCount must be less than or equal to maxReplicaCount")
    return errors


def test_scaled_objects_match_kedas_crd(objects: list[dict[str, Any]]) -> None:
    scaled = kind(objects, "ScaledObject")
    assert scaled, "no ScaledObject rendered"
    for obj in scaled:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert keda_errors(obj) == [], obj["metadata"]["name"]


def test_the_keda_check_rejects_a_broken_scaled_object(objects: list[dict[str, Any]]) -> None:
    (obj,) = kind(objects, "ScaledObject")[:1]
    misspelt = copy.deepcopy(obj)
    misspelt["spec"]["minReplicas"] = misspelt["spec"].pop("minReplicaCount")
    assert any("minReplicas" in error for error in keda_errors(misspelt))
    number = copy.deepcopy(obj)
    number["spec"]["triggers"][0]["metadata"]["listLength"] = 5  # must be a string
    assert any("is not of type 'string'" in error for error in keda_errors(number))
    inverted = copy.deepcopy(obj)
    inverted["spec"]["minReplicaCount"] = inverted["spec"]["maxReplicaCount"] + 1
    assert keda_errors(inverted)


# Autoscaling on each model's backlog.


def test_a_model_pool_scales_on_every_priority_list_of_its_queue(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    for obj in kind(objects, "ScaledObject"):
        spec = obj["spec"]
        target = named(objects, spec["scaleTargetRef"]["name"], "Deployment")
        pool = pool_of(objects, target, tmp_path)
        assert pool.models is not None and len(pool.models) == 1, "a pool of one model"
        (model,) = pool.models
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        lists = [t["metadata"]["listName"] for t in triggers]
        assert sorted(lists) == sorted(_lists(model_queue(model))), "one trigger per list"
        # The formula adds every trigger once: the backlog is their sum.
        terms = [
            term.strip() for term in spec["advanced"]["scalingModifiers"]["formula"].split("+")
        ]
        assert sorted(terms) == sorted(t["name"] for t in triggers)
        assert spec["advanced"]["scalingModifiers"]["activationTarget"] == "0"
        # Scale to zero: nothing runs while nothing waits; KEDA alone sets the replicas.
        assert spec["minReplicaCount"] == 0
        assert "replicas" not in target["spec"]
        # The lists KEDA reads are the broker's: same Redis database, same address.
        broker = urlsplit(secret(objects)["INFERENCE_FARM_BROKER_URL"])
        container = target["spec"]["template"]["spec"]["containers"][0]
        env = {var["name"]: var for var in container["env"]}
        for trigger in triggers:
            meta = trigger["metadata"]
            assert meta["databaseIndex"] == (broker.path.strip("/") or "0")
            for var in ("addressFromEnv", "passwordFromEnv"):
                assert meta[var] in env, f"{meta[var]} is not in {target['metadata']['name']}"
        address_var = env[triggers[0]["metadata"]["addressFromEnv"]]
        address = secret(objects)[address_var["valueFrom"]["secretKeyRef"]["key"]]
        assert address == f"{broker.hostname}:{broker.port}"


# Workloads.


def test_one_worker_deployment_per_pool_file(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    pools = config_map(objects, "inference-farm-pools")["data"]
    for pool_file in sorted((ROOT / "workers").glob("*.yaml")):
        assert pools[pool_file.name] == pool_file.read_text(encoding="utf-8"), (
            f"docker/kubernetes/base/pools/{pool_file.name} differs from workers/"
        )
    served = {pool_of(objects, d, tmp_path).overrides["worker_device"] for d in workers(objects)}
    names = {d["metadata"]["name"] for d in workers(objects)}
    assert "inference-farm-worker-cpu" in names and "cpu" in served
    if "inference-farm-worker-gpu" in names:
        assert "cuda:0" in served


def test_gpu_workers_request_a_gpu_and_tolerate_its_taint(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    for deployment in workers(objects):
        spec = deployment["spec"]["template"]["spec"]
        limits = spec["containers"][0]["resources"]["limits"]
        device = pool_of(objects, deployment, tmp_path).overrides["worker_device"]
        image = spec["containers"][0]["image"]
        if device.startswith("cuda"):
            assert limits.get("nvidia.com/gpu") == 1, deployment["metadata"]["name"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
                spec.get("tolerations", [])
            )
            assert "worker-gpu" in image
        else:
            assert "nvidia.com/gpu" not in limits and "worker-gpu" not in image


def test_the_overlays_differ_by_their_gpu_pools() -> None:
    gpu_names = {o["metadata"]["name"] for o in kind(list(_rendered("gpu")), "Deployment")}
    cpu_objects = list(_rendered("cpu"))
    assert "inference-farm-worker-gpu" in gpu_names
    assert "nvidia.com/gpu" not in yaml.safe_dump_all(cpu_objects)


def test_the_api_is_probed_budgeted_and_scaled_on_cpu(objects: list[dict[str, Any]]) -> None:
    api = named(objects, "inference-farm-api", "Deployment")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["inference-farm", "api"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = named(objects, "inference-farm-api", "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    budget = named(objects, "inference-farm-api", "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] >= 1
    hpa = named(objects, "inference-farm-api", "HorizontalPodAutoscaler")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference-farm-api"}
    assert hpa["spec"]["scaleTargetRef"] == target
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and hpa["spec"]["minReplicas"] >= 2


def test_every_container_has_requests_and_limits(objects: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(objects):
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def test_the_commands_are_the_farms_cli(objects: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(objects):
        for container in spec["containers"]:
            program, *args = container["command"]
            assert program == "inference-farm", name
            command: Any = cli
            while args and not args[0].startswith("-"):
                command = command.commands[args.pop(0)]  # KeyError: no such command
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            assert {arg for arg in args if arg.startswith("-")} <= options, name
    expected = {
        ("inference-farm-api", "Deployment"): ["inference-farm", "api"],
        ("inference-farm-flower", "Deployment"): ["inference-farm", "flower"],
        ("inference-farm-migrate", "Job"): ["inference-farm", "db", "upgrade"],
    }
    for (name, obj_kind), command in expected.items():
        spec = named(objects, name, obj_kind)["spec"]["template"]["spec"]
        assert spec["containers"][0]["command"] == command


# Settings, secrets, security.


def test_every_pod_reads_the_settings_file_and_the_urls(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    assert set(secret(objects)) >= URL_KEYS
    for name, spec in pod_specs(objects):
        for container in spec["containers"]:
            settings = pod_settings(objects, container, tmp_path)  # raises on a bad key
            assert settings.api_host == "0.0.0.0", name
            assert settings.broker_url == secret(objects)["INFERENCE_FARM_BROKER_URL"]
            assert settings.database_url == secret(objects)["INFERENCE_FARM_DATABASE_URL"]


def test_workers_drain_within_their_grace_period(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    for deployment in workers(objects):
        spec = deployment["spec"]["template"]["spec"]
        settings = pod_settings(objects, spec["containers"][0], tmp_path)
        grace = spec["terminationGracePeriodSeconds"]
        name = deployment["metadata"]["name"]
        # Longer than the longest job, shorter than the redelivery of a killed one.
        assert grace > max(settings.validate_timeout, settings.request_timeout), name
        assert grace < settings.visibility_timeout, name
    api = named(objects, "inference-farm-api", "Deployment")["spec"]["template"]["spec"]
    settings = pod_settings(objects, api["containers"][0], tmp_path)
    assert api["terminationGracePeriodSeconds"] > settings.request_timeout


def test_pods_run_as_the_images_user_on_a_read_only_root(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    for name, spec in pod_specs(objects):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == UID, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            data_dir = str(pod_settings(objects, container, tmp_path).data_dir)
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            for path in ("/tmp", data_dir):
                assert "emptyDir" in mounts.get(path, {}), f"{name}: no emptyDir at {path}"


def test_images_are_the_farms_and_can_be_renamed(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    images = {c["image"] for _n, spec in pod_specs(objects) for c in spec["containers"]}
    assert all(IMAGE.fullmatch(image) for image in images), images
    overlay = "gpu" if "localhost/inference-farm-worker-gpu:dev" in images else "cpu"
    base = os.path.relpath(KUBERNETES / "overlays" / overlay, tmp_path)
    kustomization = {
        "bases": [base],
        "images": [
            {"name": f"localhost/{n}", "newName": f"registry.example/{n}", "newTag": "1.2.3"}
            for n in (
                "inference-farm-api",
                "inference-farm-worker-cpu",
                "inference-farm-worker-gpu",
            )
        ],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    renamed = {c["image"] for _n, spec in pod_specs(render(tmp_path)) for c in spec["containers"]}
    renamed_from = {i.replace(":dev", ":1.2.3").replace("localhost/", "registry.example/")
                    for i in images}  # fmt: skip
    assert renamed == renamed_from
