"""The `agentq` command line, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from agentq.client import Client
from tests.helpers import make_dm


def agentq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_db_upgrade_creates_the_schema_and_is_safe_to_repeat(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    for _ in range(2):
        out = agentq("db", "upgrade", "--url", url)
        assert out.returncode == 0, out.stderr
        assert "database at head" in out.stdout


def test_post_accepts_a_message_and_names_bad_input(db: str) -> None:
    conv, user, _ = make_dm(Client(), settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    ok = agentq("post", str(conv.id), str(user.id), "hello from the shell")
    assert ok.returncode == 0, ok.stderr
    assert "seq 1" in ok.stdout
    missing = uuid.uuid4()
    bad = agentq("post", str(missing), str(user.id), "hello")
    assert bad.returncode == 2
    assert f"conversation {missing} not found" in bad.stderr
    empty = agentq("post", str(conv.id), str(user.id), "  ")
    assert empty.returncode == 2 and "content" in empty.stderr


def test_every_command_has_help() -> None:
    for cmd in (
        ["demo"],
        ["worker"],
        ["beat"],
        ["fake-llm"],
        ["db", "upgrade"],
        ["post"],
        ["reconcile"],
    ):
        out = agentq(*cmd, "--help")
        assert out.returncode == 0, (cmd, out.stderr)
        assert "Usage" in out.stdout


#: what `agentq --help` must not load: each command imports its own work when it runs
NOT_FOR_HELP = (
    "agentq.api",
    "fastapi",
    "uvicorn",
    "agentq.bench.run",
    "agentq.testing",
    "agentq.demo",
    "ops",
    "sqlalchemy",
    "celery",
)


def test_help_loads_no_command_s_work() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "agentq.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = [m for m in loaded for p in NOT_FOR_HELP if m == p or m.startswith(p + ".")]
    assert not heavy, f"agentq --help imported {sorted(heavy)}"
    assert "bench" in out.stdout and "worker" in out.stdout


def test_keys_list_says_when_each_key_was_last_used(db: str) -> None:
    import json

    from agentq.ops.keys import create_key, verify

    name = f"cli-{uuid.uuid4().hex[:6]}"
    used, _ = create_key(name)
    idle, _ = create_key(name)
    verify(used)  # a request with it
    rows = [json.loads(line) for line in agentq("keys", "list", "--json").stdout.splitlines()]
    mine = {r["prefix"]: r for r in rows if r["tenant"] == name}
    assert sorted(r["last_used_at"] is None for r in mine.values()) == [False, True]
    text = agentq("keys", "list").stdout
    assert "never used" in text and "used 20" in text
