"""The deploy files are checked, not trusted: parsed, cross-referenced with each other and with the CLI.

No container engine or Kubernetes cluster runs on the test machines, so these checks are structural:
what a typo would break (a probe on the wrong port, a claim that is not defined, an environment variable
the server does not read, a Dockerfile that copies a missing folder or runs as root).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import start_server
from latentdex.service.server_config import DEFAULT_PORT, ServerConfig

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"


def serve_envvars(name: str = "serve") -> set[str]:
    """The environment variables a `latentdex` command (`serve` by default) reads."""
    command = typer.main.get_command(app)
    serve = command.commands[name]  # type: ignore[attr-defined]
    names: set[str] = set()
    for param in serve.params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(text.split(" ", 1)[0].upper(), text.split(" ", 1)[1]) for text in joined]


def test_the_dockerfile_pins_cpu_torch_runs_unprivileged_and_checks_grpc_health() -> None:
    steps = dockerfile_instructions()
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [args for kind, args in steps if kind == "RUN"]
    torch_step = next(i for i, args in enumerate(runs) if "torch==2.13.0" in args)
    assert "download.pytorch.org/whl/cpu" in runs[torch_step]
    assert torch_step < next(i for i, args in enumerate(runs) if "pip install ." in args)
    for kind, args in steps:
        if kind == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    user = next(args for kind, args in steps if kind == "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("CMD")
    healthcheck = next(args for kind, args in steps if kind == "HEALTHCHECK")
    assert '"latentdex", "health", "--server", "127.0.0.1:50051"' in healthcheck
    exposed = {int(p) for kind, args in steps if kind == "EXPOSE" for p in args.split()}
    assert exposed == {DEFAULT_PORT, 9090, 8080}
    env_names = {part.split("=")[0] for kind, args in steps if kind == "ENV" for part in shlex.split(args)}
    latentdex_env = {name for name in env_names if name.startswith("LATENTDEX_")}
    assert latentdex_env and latentdex_env <= serve_envvars()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git"} <= set(ignored)


def test_the_compose_file_wires_server_indexer_and_store() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    server, indexer = compose["services"]["server"], compose["services"]["indexer"]
    assert (REPO / server["build"]["dockerfile"]).is_file() and server["build"]["context"] == ".."
    assert server["healthcheck"]["test"] == ["CMD", "latentdex", "health", "--server", "127.0.0.1:50051"]
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])  # published on loopback only
    libpq = {"PGPASSWORD"}  # read by the PostgreSQL driver itself
    assert set(server["environment"]) <= serve_envvars() | libpq
    assert indexer["command"][0] == "index" and indexer["image"] == server["image"]
    assert set(indexer["environment"]) <= serve_envvars("index") | libpq
    database = indexer["environment"]["LATENTDEX_DB"]
    assert database.startswith("postgresql+psycopg://") and "@postgres:" in database  # the compose service
    postgres = compose["services"]["postgres"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for service in (server, indexer):
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    volumes = set(compose["volumes"])
    for service in (server, indexer, postgres):
        named = {v.split(":")[0] for v in service["volumes"] if not v.startswith(("$", ".", "/"))}
        assert named <= volumes


def k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path
            assert document["metadata"]["name"], path
            documents.append(document)
    return documents


def test_the_kubernetes_manifests_reference_what_they_define() -> None:
    documents = k8s_documents()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    claims = {d["metadata"]["name"] for d in by_kind["PersistentVolumeClaim"]}
    config_maps = {d["metadata"]["name"]: d for d in by_kind["ConfigMap"]}
    [deployment] = by_kind["Deployment"]
    [service] = by_kind["Service"]
    [cronjob] = by_kind["CronJob"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == DEFAULT_PORT
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]  # Kubernetes' native gRPC health probe
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for source in container["envFrom"]:
        config = config_maps[source["configMapRef"]["name"]]
        assert set(config["data"]) <= serve_envvars()
        assert config["data"]["LATENTDEX_PORT"] == str(ports["grpc"])
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["args"][0] == "index"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # one writer per store
    for spec in (pod["spec"], job_pod):
        used = {
            v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
        }
        assert used <= claims
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_health_command_reports_serving_then_unavailable(tmp_path: Path) -> None:
    live = LiveStore(tmp_path / "no-store-yet")
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
    target = f"127.0.0.1:{running.port}"
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["health", "--server", target])
        assert result.exit_code == 0 and result.output.strip() == "SERVING"
    finally:
        running.stop(0)
        live.close()
    result = runner.invoke(app, ["health", "--server", target, "--timeout", "1"])
    assert result.exit_code == 1 and result.output.strip() in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


@pytest.mark.parametrize(
    "name",
    ["LATENTDEX_STORE", "LATENTDEX_PORT", "LATENTDEX_TOKEN", "LATENTDEX_METRICS_PORT", "LATENTDEX_HTTP_PORT"],
)
def test_the_server_reads_its_configuration_from_the_environment(name: str) -> None:
    assert name in serve_envvars()
