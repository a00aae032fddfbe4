"""Smoke runs of the scheduling scripts (issue 16): each runs end to end at a tiny size
and prints figures that parse, with every conversation answered and none lost. Their
timings are figures to read, not assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentq.store.scratch import ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, timeout: float = 300) -> Any:
    done = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "scripts" / name), *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_backlog_parks_and_drains_everything() -> None:
    # The suite's PostgreSQL server (the script's own server is exercised below).
    out = run_script(
        "backlog.py", "-n", "5", "-d", "2", "--every", "1", "--hold-margin", "4", "--workers", "1",
        "--pg-admin", ADMIN_URL,
    )  # fmt: skip
    assert [s["scenario"] for s in out["scenarios"]] == ["paused", "busy"]
    for s in out["scenarios"]:
        assert s["answered"] == s["expected"] == s["conversations"] + (s["scenario"] == "busy")
        assert (s["lost"], s["duplicated"], s["reordered"], s["overlapping"]) == (0, 0, 0, 0)
        assert {p["phase"] for p in s["samples"]} >= {"wait", "drain"}
        for phase in ("wait", "drain"):
            totals = s[phase]
            assert totals["seconds"] > 0
            assert all(isinstance(totals[k], int) for k in ("commits", "conn_errors"))


def test_window_crowd_answers_every_window() -> None:
    out = run_script("window_crowd.py", "--sizes", "5", "--warmup", "0", "--workers", "1")
    rounds = out["rounds"]
    assert [(r["size"], r["agents"]) for r in rounds] == [(5, "shared"), (5, "each")]
    for r in rounds:
        assert r["answered"] == 5
        assert set(r["fire_ms"]) == {"p50", "p95", "p99", "max"}
        assert r["fire_ms"]["p50"] <= r["fire_ms"]["max"]
