"""`agentq demo` runs on the embedded default: no Redis or PostgreSQL server needed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.integration
def test_demo_runs_with_no_redis_or_database_configured(tmp_path: object) -> None:
    assert not listening(6380)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "LLM_"))}
    out = subprocess.run(
        [sys.executable, "-m", "agentq.cli", "demo", "--turns", "3", "--latency", "0.2"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"redis:\s+embedded, redis://127\.0\.0\.1:\d+/0", out.stdout)
    assert "database: sqlite:///" in out.stdout
    replies = re.findall(r"^(Ava|Milo):\s+reply to: (.*)$", out.stdout, re.M)
    assert [r[0] for r in replies] == ["Ava", "Milo", "Ava"]
    assert re.search(r"^3 turns in [\d.]+s", out.stdout, re.M)
    assert not listening(6380)
