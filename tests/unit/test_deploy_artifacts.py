"""The deployment artifacts are valid without a Docker engine or a cluster to try them on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37.0"
OUR_SERVICES = {"gateway", "session", "history"}


def _k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_compose_file_follows_the_compose_specification() -> None:
    """docker-compose.yml validates against the Compose Specification JSON schema."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, get_builtin_schema("vendor.compose-spec"))
    assert set(compose["services"]) >= OUR_SERVICES


@pytest.mark.parametrize(
    "doc", _k8s_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_kubernetes_manifests_follow_the_kubernetes_schemas(doc: dict[str, Any]) -> None:
    """Every manifest validates (strictly: no unknown fields) against the Kubernetes schemas."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """The kustomize base includes every manifest file in deploy/k8s."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_every_deployment_is_probed_and_shuts_down_gracefully() -> None:
    """Each service has readiness/liveness probes on its health endpoints, a preStop pause,
    a termination grace covering preStop + the service's own grace, an HPA and a PDB."""
    docs = _k8s_documents()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {f"chat-{s}" for s in OUR_SERVICES}
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for service in OUR_SERVICES:
        name = f"chat-{service}"
        assert {
            ("HorizontalPodAutoscaler", name),
            ("PodDisruptionBudget", name),
            ("Service", name),
        } <= kinds
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [f"chat-{service}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        grace = float(config[f"{service.upper()}_SHUTDOWN_GRACE_S"])
        assert pod["terminationGracePeriodSeconds"] > pre_stop + grace
        assert "limits" in container["resources"] and "requests" in container["resources"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_container_commands_are_installed_console_scripts() -> None:
    """Each service's container command is a console script our packages install."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in OUR_SERVICES:
        (command,) = compose["services"][service]["command"]
        assert command == f"chat-{service}"
        pyproject = (ROOT / "services" / service / "pyproject.toml").read_text()
        assert f'{command} = "chat_{service}.main:run"' in pyproject


def test_image_build_installs_like_make_setup() -> None:
    """The image installs with the same pinned uv and the same frozen lock as make setup."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    uv_version = re.search(r"UV_VERSION := (\S+)", makefile)
    assert uv_version is not None
    assert f'"uv=={uv_version.group(1)}"' in dockerfile
    assert "uv sync --frozen" in dockerfile and "$(UV) sync --frozen" in makefile
    assert "USER chat" in dockerfile


def test_every_service_logs_in_to_nats_as_its_own_identity() -> None:
    """Compose gives NATS the public keys and each service its own seed (from files git
    ignores); each Deployment mounts only its own key of chat-nats-credentials, not
    world-readable, where its *_NATS_NKEY_SEED_FILE points."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["nats"]["env_file"] == "deploy/secrets/nats.env"
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().split()
    docs = _k8s_documents()
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert not any(d["kind"] == "Secret" and "nats" in d["metadata"]["name"] for d in docs)
    for service in OUR_SERVICES:
        assert compose[service]["env_file"] == f"deploy/secrets/{service}.env"
        pod = deployments[f"chat-{service}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volume = next(v for v in pod["volumes"] if v["name"] == "nats-credentials")["secret"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "nats-credentials")
        assert volume["secretName"] == "chat-nats-credentials"
        assert volume["items"] == [{"key": service, "path": "seed"}]
        assert volume["defaultMode"] & 0o007 == 0
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
        assert config[f"{service.upper()}_NATS_NKEY_SEED_FILE"] == f"{mount['mountPath']}/seed"


def test_the_ha_compose_file_overlays_the_clustered_engines() -> None:
    """docker-compose.ha.yml validates too, and points every service at every node: three
    NATS URLs, a Redis Cluster URL, both Postgres servers with read-write routing; the URLs
    parse as the services parse them."""
    from chat_session.redisclient import parse_url

    ha = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    jsonschema.validate(ha, get_builtin_schema("vendor.compose-spec"))
    services = ha["services"]
    for service in OUR_SERVICES:
        assert len(services[service]["environment"][f"{service.upper()}_NATS_URL"].split(",")) == 3
    assert parse_url(services["session"]["environment"]["SESSION_REDIS_URL"]).kind == "cluster"
    dsn = services["history"]["environment"]["HISTORY_POSTGRES_DSN"]
    assert "postgres:5432,postgres-standby:5432" in dsn and "target_session_attrs=read-write" in dsn
    assert {f"redis-{n}" for n in range(2, 7)} | {"nats-2", "nats-3", "postgres-standby"} <= set(
        services
    )


def test_the_kubernetes_setup_names_clustered_engines() -> None:
    """The ConfigMap's Redis URL is a cluster's; the Postgres operator's Cluster waits for a
    standby's flush before any commit is acknowledged."""
    from chat_session.redisclient import parse_url

    config = next(d for d in _k8s_documents() if d["kind"] == "ConfigMap")["data"]
    assert parse_url(config["SESSION_REDIS_URL"]).kind == "cluster"
    cnpg = yaml.safe_load((ROOT / "deploy" / "postgres" / "cnpg-cluster.yaml").read_text())
    spec = cnpg["spec"]
    assert spec["instances"] >= 2
    assert spec["postgresql"]["parameters"]["synchronous_commit"] == "on"
    assert spec["postgresql"]["synchronous"] == {
        "method": "any", "number": 1, "dataDurability": "required",
    }  # fmt: skip
