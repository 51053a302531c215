"""The deployment material (Dockerfile, Kubernetes manifests, systemd unit, contracts workflow) against the
code it runs: every command line must parse, every probe must ask a service the server really serves, and the
timings must let a drain finish. Nothing here needs Docker or a cluster; the files are read as data."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from microstate.server import cli, registry
from microstate.server.config import load

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _serve_settings(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The microstate name and the parsed settings of a `microstate serve ...` command line."""
    args = cli._parser().parse_args(argv)
    assert args.command == "serve"
    registry.get(args.name)  # a name the registry knows
    settings = {key: value for key, value in vars(args).items() if key not in ("command", "name")}
    return args.name, settings


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_deployments_run_what_they_probe(path: Path) -> None:
    documents = _documents(path)
    deployments = [doc for doc in documents if doc["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        labels = deployment["spec"]["selector"]["matchLabels"]
        pod = deployment["spec"]["template"]
        assert labels.items() <= pod["metadata"]["labels"].items()
        (container,) = pod["spec"]["containers"]
        name, settings = _serve_settings(container["args"])
        config = load(settings)
        microstate = registry.get(name)
        port = config.port or microstate.default_port
        assert container["ports"][0]["containerPort"] == port
        readiness = container["readinessProbe"]["grpc"]
        assert readiness["port"] == port
        assert readiness["service"] in microstate.service_names
        assert container["livenessProbe"]["tcpSocket"]["port"] == port
        # SIGKILL must not cut the drain short, and the readiness probe must notice the drain before the
        # listener closes.
        assert pod["spec"]["terminationGracePeriodSeconds"] > config.drain_seconds + config.grace_seconds
        probe = container["readinessProbe"]
        assert probe["periodSeconds"] * probe.get("failureThreshold", 3) < config.drain_seconds
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user

        budgets = [doc for doc in documents if doc["kind"] == "PodDisruptionBudget"]
        assert any(budget["spec"]["selector"]["matchLabels"] == labels for budget in budgets)
        services = [doc for doc in documents if doc["kind"] == "Service"]
        # Headless, so the SDK's DNS resolver sees every pod and balances per call.
        headless = {"selector": labels, "clusterIP": "None"}
        assert any(svc["spec"] == {**svc["spec"], **headless} for svc in services)


def test_systemd_unit_runs_a_valid_command() -> None:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "systemd" / "microstate@.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"].replace("%i", "profile").replace("${STATE_DIRECTORY}", "/s"))
    assert Path(command[0]).name == "microstate"
    _, settings = _serve_settings(command[1:])
    config = load(settings)
    assert float(service["TimeoutStopSec"]) > config.drain_seconds + config.grace_seconds
    assert service["RestartPreventExitStatus"] == str(cli.USAGE_ERROR)


def test_dockerfile_copies_what_exists_and_serves_a_known_microstate() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1] for line in lines if line.startswith("COPY ") and "--from" not in line]
    assert copies and all((ROOT / source).is_dir() for source in copies)
    user = next(line.split()[1] for line in lines if line.startswith("USER "))
    assert user == "10001"
    exposed = {int(port) for line in lines if line.startswith("EXPOSE ") for port in line.split()[1:]}
    assert {registry.get(name).default_port for name in registry.names()} <= exposed


def test_contracts_workflow_runs_the_pinned_tools() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "contracts.yml").read_text())
    steps = workflow["jobs"]["contracts"]["steps"]
    commands = " ".join(step.get("run", "") for step in steps)
    pins = (ROOT / "requirements" / "test.txt").read_text()
    for tool in ("buf-bin", "grpcio-tools"):
        pin = next(line for line in pins.splitlines() if line.startswith(tool))
        assert pin in commands, f"{tool}: the workflow must install the version the suite pins ({pin})"
    assert "buf breaking" in commands and "codegen.py --check" in commands
