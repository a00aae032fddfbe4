"""The `agentq` commands of issue 17, run as a user would: --version, help panels,
conversations, db current|history|downgrade, jobs retry --all-failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentq.client import Client
from agentq.testing.stack import Stack
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import jobs_of, make_dm, wait_until


def agentq(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=dict(os.environ),
        timeout=60,
    )


def test_version_and_help_panels() -> None:
    from agentq import __version__

    out = agentq("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"agentq {__version__}"
    text = agentq("--help").stdout
    panels = ["Start here", "Run", "Operate", "Test"]
    at = [text.index(f"─ {p} ─") for p in panels]
    assert at == sorted(at), text
    start_here = text[at[0] : at[1]]
    assert "demo" in start_here and "dev" in start_here
    assert "conversations" in text[at[2] : at[3]] and "bench" in text[at[3] :]


def test_conversations_give_the_ids_post_takes(db: str) -> None:
    if db.startswith("postgresql"):
        pytest.skip("one CLI code path: the store's two dialects are tested below it")
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert agentq("agents", "create", "Ava", "--tenant", tenant).returncode == 0
    made = agentq(
        "conversations", "create", "--agent", "Ava", "--user", "sam", "--title", "trip",
        "--tenant", tenant, "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    conv = json.loads(made.stdout)
    assert conv["kind"] == "dm" and conv["title"] == "trip"
    assert [p["kind"] for p in conv["participants"]] == ["agent", "user"]

    listed = json.loads(agentq("conversations", "list", "--tenant", tenant, "--json").stdout)
    assert [c["id"] for c in listed] == [conv["id"]]
    assert conv["id"] in agentq("conversations", "list", "--tenant", tenant).stdout

    added = agentq(
        "conversations", "add-participant", conv["id"], "--user", "ann",
        "--display-name", "Ann", "--tenant", tenant, "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    ann = json.loads(added.stdout)
    shown = json.loads(
        agentq("conversations", "show", conv["id"], "--tenant", tenant, "--json").stdout
    )
    assert [p["id"] for p in shown["participants"]][-1] == ann["id"]
    assert "Ann" in agentq("conversations", "show", conv["id"], "--tenant", tenant).stdout

    posted = agentq("post", conv["id"], ann["id"], "hello from the shell", "--tenant", tenant)
    assert posted.returncode == 0, posted.stderr
    assert "seq 1" in posted.stdout

    # another tenant's conversation is not found; bad input names what is wrong
    other = agentq("conversations", "show", conv["id"], "--tenant", tenant + "-other")
    assert other.returncode == 2 and "not found" in other.stderr
    neither = agentq("conversations", "add-participant", conv["id"], "--tenant", tenant)
    assert neither.returncode == 2 and "--agent or --user" in neither.stderr
    bad = agentq("conversations", "create", "--kind", "group", "--tenant", tenant)
    assert bad.returncode == 2 and "kind" in bad.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, with no schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_db_current_history_and_downgrade_with_confirmation(scratch_db: str) -> None:
    url = ["--url", scratch_db]
    assert agentq("db", "upgrade", *url).returncode == 0
    head = agentq("db", "current", *url)
    assert head.returncode == 0 and "(head)" in head.stdout, head.stderr
    history = agentq("db", "history", *url).stdout.splitlines()
    assert "(head) (current)" in history[0] and len(history) >= 7

    refused = agentq("db", "downgrade", *url, stdin="n\n")
    assert refused.returncode == 1 and "Aborted" in refused.stderr
    assert "(head)" in agentq("db", "current", *url).stdout  # nothing done

    back = agentq("db", "downgrade", *url, "--yes")
    assert back.returncode == 0, back.stderr
    now = agentq("db", "current", *url).stdout
    assert now.strip() and "(head)" not in now
    assert "(current)" in agentq("db", "history", *url).stdout.splitlines()[1]
    assert agentq("db", "upgrade", *url).returncode == 0
    assert "(head)" in agentq("db", "current", *url).stdout


@pytest.mark.integration
def test_retry_all_failed_asks_first_and_shows_progress(db: str, tmp_path: Path) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    client = Client(tenant=tenant)
    quick = {"debounce_seconds": 0.1, "max_wait_seconds": 0.3}
    with Stack(dict(os.environ), log_dir=tmp_path / "logs") as stack:
        stack.start_worker(concurrency=4)
        conv, user, agent_id = make_dm(client, settings=quick)
        client.pause_agent(agent_id)
        client.post_message(conv.id, user.id, "anyone?")
        wait_until(lambda: jobs_of(conv.id), timeout=30)
        client.stop_agent(agent_id)  # its waiting job fails visibly
        (job,) = jobs_of(conv.id)
        assert job.status == "failed"
        client.start_agent(agent_id)

        retry = ["jobs", "retry", "--all-failed", "--tenant", tenant]
        refused = agentq(*retry, stdin="n\n")
        assert refused.returncode == 1 and "Retry 1 failed job(s)" in refused.stderr
        assert client.get_job(job.id).status == "failed"  # nothing done

        done = agentq(*retry, "--yes")
        assert done.returncode == 0, done.stderr
        assert "retried 1 of 1 (0 errors)" in done.stderr
        assert str(job.id) in done.stdout
        wait_until(lambda: client.get_job(job.id).status == "completed", timeout=60)
