"""`agentq bench --short`: it runs end to end, says each phase as it goes, and reports sane
figures.

Nothing here asserts on speed (CI hosts are shared and noisy); the figures are printed so
that they show in the CI log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agentq.bench.config import SHORT
from agentq.bench.run import format_report

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPLITS = ("e2e", "debounce", "queue", "llm", "completion", "overhead", "fire_error")


def test_short_bench_completes_and_reports_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    # As a user runs it: the report alone on stdout, each phase said on stderr as it goes.
    out = subprocess.run(
        [sys.executable, "-m", "agentq.cli", "bench", "--short", "--json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "AGENTQ_DATABASE_URL"},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    with capsys.disabled():
        print("\n" + format_report(result))
    said = [line for line in out.stderr.splitlines() if line.startswith("bench: ")]
    for step in ("setup", "agentq", "latency phase", "throughput phase", "baselines", "capacity"):
        started = [i for i, line in enumerate(said) if line.startswith(f"bench: {step}")]
        assert len(started) == 2 and said[started[1]].split(": done in ")[1].endswith("s"), said

    lat, thr = result["agentq"]["latency"], result["agentq"]["throughput"]
    assert lat["turns"] > 0 and thr["turns"] == SHORT.burst
    for k in SPLITS:
        assert set(lat[k]) == {"n", "p50", "p95", "p99"}
        assert lat[k]["n"] == lat["turns"]
        if k not in ("fire_error", "overhead"):  # clocks: these may dip a hair below zero
            assert lat[k]["p50"] >= 0
    assert lat["turns_per_s"] > 0 and thr["turns_per_s"] > 0
    assert lat["peak_llm_in_flight_per_worker"] >= 1
    assert result["agentq"]["worker_rss_mb"] > 0
    assert result["baseline"]["noop_tasks_per_s"] > 0
    assert result["baseline"]["pipeline_messages_per_s"] > 0
    assert set(result["ratios"]) == {"turns_vs_pipeline", "turns_vs_noop", "pipeline_vs_noop"}
    assert all(v >= 0 for v in result["ratios"].values())
    cap = result["capacity"]
    assert cap["calls"] == SHORT.capacity and cap["lost"] == 0
    assert cap["peak_in_flight"] >= 1 and cap["worker_rss_mb"] > 0
    json.dumps(result)  # --json output is plain JSON
