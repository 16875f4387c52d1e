"""The deployment files, checked without a cluster or a Docker engine: the Kubernetes manifests
against Kubernetes' own JSON schemas (kubernetes-validate ships them; strict, so a misspelt
field fails), docker-compose.yml against the Compose specification (compose-spec, a strict
parser), and both against this product: every variable they set is one the node reads, the
settings they make load, names and labels point at what exists, probes and grace periods fit
the graceful stop."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyOptions

from peerspark_rt.config import load_settings, variable_names
from tests.nodes import ROOT

K8S = ROOT / "config" / "k8s"
# the oldest Kubernetes still commonly run, and the newest whose schemas the package ships
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_VALUES = {
    "DATABASE_URL": "postgresql://peerspark:pw@postgres:5432/peerspark",
    "REDIS_URL": "redis://redis:6379/0",
    "JWT_SECRET": "j" * 40,
    "JWT_REFRESH_SECRET": "r" * 40,
    "METRICS_TOKEN": "m" * 40,
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "OPENAI_API_KEY": "",
}
KNOWN = set(variable_names()) | {"NODE_ENV", "FROM_EMAIL"}


def manifests() -> dict[str, list[dict[str, Any]]]:
    return {
        path.name: [d for d in yaml.safe_load_all(path.read_text()) if d]
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def one(kind: str) -> dict[str, Any]:
    found = [d for docs in manifests().values() for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_schemas(version: str) -> None:
    kinds = set()
    for name, docs in manifests().items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}: {exc}")
            kinds.add(doc["kind"])
    assert kinds >= {
        "Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "ConfigMap", "Secret",
        "PodDisruptionBudget",
    }  # fmt: skip
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(manifests())


def test_kubernetes_manifests_fit_the_product() -> None:
    config, secret = one("ConfigMap"), one("Secret")
    assert set(config["data"]) <= KNOWN, set(config["data"]) - KNOWN
    assert set(secret["stringData"]) <= KNOWN, set(secret["stringData"]) - KNOWN
    assert not set(config["data"]) & set(secret["stringData"])
    settings = load_settings({**config["data"], **SECRET_VALUES})
    assert settings.production
    assert settings.trust_proxy_headers
    assert settings.metrics_address == ("0.0.0.0", 9464)

    deployment = one("Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (node,) = pod["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert node[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    pause = int(node["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + settings.shutdown_timeout, "the pod is killed before it has drained"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    ports = {p["name"] for p in node["ports"]}
    for source in node["envFrom"] + pod["spec"]["initContainers"][0]["envFrom"]:
        ref = source.get("configMapRef") or source["secretRef"]
        assert ref["name"] in (config["metadata"]["name"], secret["metadata"]["name"])

    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    ingress = one("Ingress")
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > settings.ws_heartbeat
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with `env` as the .env file."""

    def one_var(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name}: {arg}")
        return arg

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one_var, value)


def test_compose_file_is_valid_and_fits_the_product() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    compose = PyOptions(apply_merge=True).from_yaml(text)  # strict: unknown keys are errors
    compose.validate()
    spec = compose.to_dict()
    services: dict[str, Any] = spec["services"]
    assert {"postgres", "redis", "minio", "nginx"} <= set(services)
    nodes = [n for n, s in services.items() if n.startswith("node")]
    assert len(nodes) == 2
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on an unknown {needed}"
        for mount in service.get("volumes", ()):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"
            else:
                assert source in spec.get("volumes", {}), f"{name}: undeclared volume {source}"
    assert services["migrate"]["build"] in (".", {"context": "."})

    dotenv = {
        "POSTGRES_PASSWORD": "pg-password",
        "JWT_SECRET": "j" * 40,
        "JWT_REFRESH_SECRET": "r" * 40,
        "METRICS_TOKEN": "m" * 40,
        "MINIO_ROOT_PASSWORD": "minio-password",
    }
    for name in ("migrate", *nodes):
        env = {k: interpolate(str(v), dotenv) for k, v in services[name]["environment"].items()}
        assert set(env) <= KNOWN, set(env) - KNOWN
        settings = load_settings(env)
        assert settings.production
        assert settings.trust_proxy_headers
        assert settings.database_url
        assert "postgres:5432" in settings.database_url
        assert settings.s3_endpoint_url == "http://minio:9000"
    with pytest.raises(AssertionError, match=r"set JWT_SECRET in \.env"):
        interpolate(services[nodes[0]]["environment"]["JWT_SECRET"], {})

    # nginx runs config/nginx.conf with its upstream rewritten to the two nodes
    script = services["nginx"]["command"][-1]
    sed = script.split("/etc/peerspark/nginx.conf")[0]
    rendered = subprocess.run(
        [*shlex.split(sed), str(ROOT / "config" / "nginx.conf")],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    upstream = re.search(r"upstream peerspark \{(.*?)\}", rendered, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server (\S+)", upstream.group(1), re.M)
    assert servers == ["node1:8080", "node2:8080"]


def test_dockerfile_is_multi_stage_unprivileged_and_checked() -> None:
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())  # continuation lines
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage"
    final = lines[stages[-1] :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") and "/health" in line for line in final)
    assert any("COPY --from=" in line for line in final)
    joined = "\n".join(final)
    assert "TRUST_PROXY_HEADERS=false" in joined
    assert "TRUST_PROXY_HEADERS=true" not in joined
    assert Path(ROOT / ".dockerignore").exists()
