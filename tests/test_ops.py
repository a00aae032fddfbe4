"""Operator CLI against the live stack, and the deployment files in ops/ validated."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentq.cli import app
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.helpers import jobs_of, make_dm, replies_of, wait_until
from tests.profile_support import declare_profile

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def flaky_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(FakeLLMConfig(latency=0.01, error_rate=1.0)) as server:
        yield server


@pytest.mark.integration
def test_jobs_retry_completes_a_failed_job_once_the_provider_recovers(
    live,
    flaky_llm: FakeLLMServer,  # noqa: ANN001
) -> None:
    conv, user, agent_id = make_dm(
        live.client, model_config={"profile": declare_profile(flaky_llm.url)}
    )
    live.client.post_message(conv.id, user.id, "are you there?")
    job = wait_until(
        lambda: next((j for j in jobs_of(conv.id) if j.status == "failed"), None),
        timeout=60,
        what="the job to fail",
    )
    assert job.failure_reason

    listed = json.loads(cli("jobs", "list", "--status", "failed", "--json", "--limit", "1000"))
    assert str(job.id) in {r["id"] for r in listed}
    assert all(r["status"] == "failed" for r in listed)
    assert str(job.id) in cli("jobs", "list", "--status", "failed")
    shown = json.loads(cli("jobs", "show", str(job.id), "--json"))
    assert shown["status"] == "failed" and shown["attempts"] == job.max_attempts
    assert shown["reply_message_id"] is None
    assert "failure_reason" in cli("jobs", "show", str(job.id))

    flaky_llm.control(error_rate=0)
    out = json.loads(cli("jobs", "retry", str(job.id), "--json"))
    assert out == [{"id": str(job.id), "status": "waiting"}] or out[0]["status"] in (
        "active",
        "completed",
    )
    wait_until(
        lambda: [j for j in jobs_of(conv.id) if j.id == job.id][0].status == "completed",
        timeout=30,
        what="the retried job to complete",
    )
    assert len(replies_of(conv.id)) == 1
    done = json.loads(cli("jobs", "show", str(job.id), "--json"))
    assert done["reply_message_id"] and done["attempts"] == 1

    # retrying a completed job is refused, and says so
    result = runner.invoke(app, ["jobs", "retry", str(job.id)])
    assert result.exit_code == 2 and "only failed or cancelled" in result.output


@pytest.mark.integration
def test_retry_all_failed_and_status(live, flaky_llm: FakeLLMServer) -> None:  # noqa: ANN001
    convs = [
        make_dm(live.client, model_config={"profile": declare_profile(flaky_llm.url)})
        for _ in range(2)
    ]
    for conv, user, _ in convs:
        live.client.post_message(conv.id, user.id, "hello")
    wait_until(
        lambda: all(any(j.status == "failed" for j in jobs_of(c.id)) for c, _, _ in convs),
        timeout=60,
        what="both jobs to fail",
    )

    status = json.loads(cli("status", "--json"))
    assert set(status["queues"]) == {"agentq.control", "agentq.llm"}
    assert len(status["workers"]) >= 2
    assert all(w["queues"] for w in status["workers"])
    assert status["jobs"]["failed"] >= 2
    assert len(status["agents"]) >= 2
    table = cli("status")
    assert "Queues" in table and "agentq.llm" in table and "Workers" in table

    flaky_llm.control(error_rate=0)
    retried = json.loads(cli("jobs", "retry", "--all-failed", "--yes", "--json"))
    assert len(retried) >= 2
    for conv, _, _ in convs:
        wait_until(
            lambda c=conv: any(j.status == "completed" for j in jobs_of(c.id)),
            timeout=30,
            what="retried jobs to complete",
        )
        assert len(replies_of(conv.id)) == 1


def test_retry_needs_an_id_or_all_failed() -> None:
    assert runner.invoke(app, ["jobs", "retry"]).exit_code != 0
    assert runner.invoke(app, ["jobs", "list", "--status", "nope"]).exit_code != 0


def test_compose_and_manifests_validate() -> None:
    """docker-compose.yml against the compose-spec schema (and `docker compose config`
    when the plugin is installed); every ops/k8s manifest against the Kubernetes and KEDA
    schemas."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "validate.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compose: ok" in proc.stdout
    assert "ScaledObject" in proc.stdout and "Deployment" in proc.stdout


def test_oldest_waiting_job_age_is_scraped(
    tmp_path: Path,
    base_env: dict[str, str],
    quiet_redis,  # noqa: ANN001
    restored_env: None,
) -> None:
    """agentq_oldest_waiting_job_seconds, the stuck-conversation alert's metric: 0 while no
    job waits, then the age of the oldest waiting job (a database of its own: others' jobs
    do not count)."""
    from datetime import timedelta

    from agentq.client import Client
    from agentq.clock import utcnow
    from agentq.runtime import metrics
    from agentq.store.migrate import upgrade
    from agentq.store.models import Job
    from agentq.store.session import transaction
    from tests.conftest import apply_env

    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    upgrade(url)
    apply_env({**base_env, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": quiet_redis.url})

    def oldest() -> float:
        (gauge,) = [
            m
            for m in metrics.StateCollector().collect()
            if m.name == "agentq_oldest_waiting_job_seconds"
        ]
        return float(gauge.samples[0].value)

    assert oldest() == 0
    client = Client()
    conv, user, agent_id = make_dm(client, settings={"debounce_seconds": 60})
    message = client.post_message(conv.id, user.id, "is anyone there?")
    with transaction() as s:
        s.add(
            Job(
                conversation_id=conv.id,
                agent_id=agent_id,
                trigger_message_id=message.id,
                status="waiting",
                created_at=utcnow() - timedelta(seconds=600),
            )
        )
    assert 600 <= oldest() < 3600


def _ops_module(name: str):  # noqa: ANN202 - ops/ is not a package
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"ops_{name}", ROOT / "ops" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_validate_finds_what_breaks_a_deployment(tmp_path: Path) -> None:
    """ops/validate.py on a copy of ops/k8s with one fault of each kind it must catch."""
    import shutil

    import yaml

    validate = _ops_module("validate")
    k8s = tmp_path / "k8s"
    shutil.copytree(ROOT / "ops" / "k8s", k8s)

    def edit(name: str, change) -> None:  # noqa: ANN001
        docs = list(yaml.safe_load_all((k8s / name).read_text()))
        change(docs)
        (k8s / name).write_text(yaml.safe_dump_all(docs))

    kust = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    kust["resources"].remove("namespace.yaml")  # nothing creates the namespace
    (k8s / "kustomization.yaml").write_text(yaml.safe_dump(kust))

    def writable_beat(docs: list) -> None:  # noqa: ANN001
        container = docs[0]["spec"]["template"]["spec"]["containers"][0]
        container["securityContext"]["readOnlyRootFilesystem"] = False
        del container["livenessProbe"]

    def unmigrated_llm_on_its_list(docs: list) -> None:  # noqa: ANN001
        del docs[0]["spec"]["template"]["spec"]["initContainers"]
        trigger = docs[2]["spec"]["triggers"][0]["metadata"]
        trigger["query"] = 'max(agentq_queue_depth{queue="agentq.llm"})'
        del docs[2]["spec"]["advanced"]

    edit("beat.yaml", writable_beat)
    edit("worker-llm.yaml", unmigrated_llm_on_its_list)
    edit("api.yaml", lambda docs: docs.pop())  # the PodDisruptionBudget
    errors, _ = validate.check_k8s(k8s, validate.defined_metrics(ROOT / "agentq"))
    text = "\n".join(errors)
    for expected in (
        "namespace.yaml is not in resources",
        "the Namespace is not the first object",
        "Deployment/agentq-beat: container beat has a writable root filesystem",
        "Deployment/agentq-beat: no probe",
        "Deployment/agentq-worker-llm: worker starts without migrating",
        "agentq-worker-llm does not count running jobs",
        "agentq-worker-llm has no scale-down stabilization",
        "no PodDisruptionBudget selects the API's pods",
    ):
        assert expected in text, text


def test_validate_knows_the_code_metrics_and_the_scrape_jobs() -> None:
    validate = _ops_module("validate")
    metrics = validate.defined_metrics(ROOT / "agentq")
    assert {
        "agentq_oldest_waiting_job_seconds",
        "agentq_jobs_finished_total",
        "agentq_response_time_seconds_bucket",
        "agentq_queue_depth",
    } <= metrics
    assert "agentq_no_such_metric" not in metrics
    import yaml

    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    given = validate.scrape_labels(config)
    assert {"agentq-api", "agentq-worker"} <= given["job"]
    assert "worker" in given["component"]
    assert list(validate.selectors('absent(up{job="x", component="worker"} == 1)')) == [
        ("job", "=", "x"),
        ("component", "=", "worker"),
    ]


def test_the_architecture_picture_is_drawn_from_its_source() -> None:
    """ops/architecture.svg is what ops/architecture.py draws now (and the README shows it)."""
    module = _ops_module("architecture")
    assert (ROOT / "ops" / "architecture.svg").read_text() == module.render()
    assert "](ops/architecture.svg)" in (ROOT / "README.md").read_text()
