"""`agentq flower` against live workers: tasks read well, their arguments are ids only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import jobs_of, make_dm, wait_until

pytestmark = pytest.mark.integration

AUTH = ("ops", "s3cret-pw")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def flower(live, tmp_path) -> Iterator[str]:  # noqa: ANN001
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentq.cli",
            "flower",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--basic-auth",
            f"{AUTH[0]}:{AUTH[1]}",
            "--url-prefix",
            "flower",
        ],
        env={**os.environ, **live.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/flower"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        try:
            return httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what="flower")
        time.sleep(0.5)  # flower enables events on the workers just after it listens
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        log.close()


def test_flower_shows_a_finished_task_with_id_only_arguments(live, flower: str) -> None:  # noqa: ANN001
    secret_text = "the-launch-code-is-4242"
    conv, user, _ = make_dm(live.client)
    live.client.ask(conv.id, user.id, secret_text, timeout=30)
    job = jobs_of(conv.id)[0]

    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401  # auth required

    def run_job_task() -> dict | None:
        r = httpx.get(
            f"{flower}/api/tasks", params={"taskname": "agentq.run_job"}, auth=AUTH, timeout=5
        )
        r.raise_for_status()
        return next(
            (
                t
                for t in r.json().values()
                if str(job.id) in (t.get("args") or "") and t["state"] == "SUCCESS"
            ),
            None,
        )

    task = wait_until(run_job_task, timeout=30, what="the run_job task in flower")
    assert task["name"] == "agentq.run_job"
    assert task["args"] == f"('{job.id}', {job.lease_token})" or task["args"] == (
        f"['{job.id}', {job.lease_token}]"
    )
    info = httpx.get(f"{flower}/api/task/info/{task['uuid']}", auth=AUTH, timeout=5).json()
    for value in (task["args"], task["kwargs"], str(info)):
        assert secret_text not in value
        assert live.env["LLM_API_KEY"] not in value
    names = {
        t["name"]
        for t in httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json().values()
        if t.get("name")
    }
    # The debounce window was fired by a worker's timer loop, not a task of its own.
    assert "agentq.run_job" in names
    assert all(n.startswith("agentq.") for n in names)

    metrics = httpx.get(f"{flower}/metrics", auth=AUTH, timeout=5)
    assert metrics.status_code == 200
    assert "flower_events_total" in metrics.text


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--address", "0.0.0.0"], {}, "FLOWER_BASIC_AUTH"),
        (["--address", "0.0.0.0"], {"FLOWER_BASIC_AUTH": ""}, "FLOWER_BASIC_AUTH"),
        ([], {"FLOWER_BASIC_AUTH": "admin:change-me"}, "well-known default"),
        (["--address", "0.0.0.0", "--basic-auth", "ops"], {}, "user:password"),
    ],
)
def test_flower_refuses_to_start_open_or_with_a_default_password(
    args: list[str], env: dict[str, str], says: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agentq.cli", "flower", *args],
        env={**{k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr
