"""Smoke run of ops/bench/turn_cost.py (issue 19's per-turn cost) at a tiny size, on the
suite's PostgreSQL server: every turn is answered and the figures are there and add up.
Its CPU figures are read, never asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from agentq.store.scratch import ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ops" / "bench" / "turn_cost.py"


def test_turn_cost_counts_every_step_and_adds_up() -> None:
    # The settings other tests left in this process are not the script's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "LLM_"))}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "-n", "4", "--warmup", "1", "--conversations", "2",
         "--statements", "--json", "--pg-admin", ADMIN_URL],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout, done.stderr[-3000:]
    out = json.loads(done.stdout)
    checks = out["checks"]
    assert checks["replies"] == checks["replies_expected"] == 5
    steps, control = out["steps"], out["control"]
    # (structure only: the hot path may merge steps, transactions and task hops)
    assert control["sql"] > 0 and control["commits"] > 0 and control["cpu_ms"] > 0
    assert steps["post"]["sql"] > 0 and steps["post"]["cpu_ms"] > 0
    # the control total is the sum of its steps; a step's SQL is what --statements lists
    for figure in ("sql", "commits", "pg_trips", "redis", "celery"):
        assert abs(control[figure] - sum(s[figure] for s in steps.values())) < 0.05, figure
    for step, figures in steps.items():
        listed = sum(count for _, count in out["statements"].get(step, []))
        assert abs(listed - figures["sql"]) < 0.05, step
    sent = sum(n for label, tasks in out["tasks"].items() if label in steps for n in tasks.values())
    assert abs(sent - control["celery"]) < 0.05 and control["celery"] >= 1  # run_job at least
    assert 0 < control["redis_trips"] <= control["redis"]
    assert control["redis"] * 4 <= checks["redis_commands_counted"]
    assert checks["redis_commands_counted"] <= checks["redis_commands_server"]  # + Lua's own
    assert 0 < control["cpu_ms"] <= checks["process_cpu_ms_per_turn"]
    # and the table prints the same result
    spec = importlib.util.spec_from_file_location("turn_cost", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("turn_cost", module)  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    text = "\n".join(module.table(out))
    assert "control total" in text and "SQL of post" in text
