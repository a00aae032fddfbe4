"""Smoke runs of issue 15's scale scripts (ops/scripts/feed_completeness.py and
wait_storm.py) at a tiny size, on the suite's PostgreSQL server: each runs end to end and
prints figures that parse, with nothing missed, nothing stored of a refused post and no
5xx. Their timings are figures to read, not assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentq.store.scratch import ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str) -> tuple[int, Any]:
    """(exit status, the figures) of one run with `--json`."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "scripts" / name), *args, "--pg-admin", ADMIN_URL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout, done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def test_feed_completeness_misses_nothing() -> None:
    _, out = script(
        "feed_completeness.py", "--writers", "2", "--events", "100", "--reconnect-every", "0.5",
        "--json",
    )  # fmt: skip
    assert out["events_written"] == 100
    paging, sse = out["readers"]
    assert (paging["received"], paging["missed"], paging["repeated"]) == (100, 0, 0)
    assert sse["connections"] >= 2
    assert (sse["distinct"], sse["missed"], sse["unknown"], sse["repeated"]) == (
        100, 0, 0, 0,
    )  # fmt: skip
    # (a stored event is sent with its own cursor, so a resume repeats nothing)


def test_wait_storm_refuses_the_surplus_whole_and_answers_no_5xx() -> None:
    code, out = script(
        "wait_storm.py", "--waits", "20", "--wait-cap", "5", "--wait", "5", "--llm-latency",
        "2", "--conversations", "4", "--baseline", "1", "--json",
    )  # fmt: skip
    assert code == 0, out
    a = out["a"]
    assert sum(a["by_status"].values()) == 20
    assert set(a["by_status"]) <= {"201", "202", "429"}
    refused = a["by_status"].get("429", 0)
    assert refused >= 1 and a["429_with_retry_after"] == refused
    assert a["429_without_retry_after"] == a["refused_stored"] == a["5xx"] == 0
    assert a["admitted_stored"] == a["admitted"] == 20 - refused
    for phase in ("alone", "storm"):
        b = out["b"][phase]
        assert b["requests"] > 0 and b["5xx"] == 0 and b["non_2xx"] == 0
        assert set(b) >= {"p50", "p95", "p99", "max"}
