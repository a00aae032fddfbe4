"""Smoke run of issue 16's re-drive script (ops/scripts/redrive.py) at a small size, on the
suite's PostgreSQL server: 50 conversations parked on a paused agent, another agent's job
loses its worker to SIGKILL, `agentq beat` claims it again, and after resume every message
is answered once, in order. Its timings are figures to read; the one bound asserted is the
script's own (claimed again within two reconciler intervals of the lease's expiry)."""

from __future__ import annotations

from tests.test_scripts import script

SMALL = (
    "-n", "50", "--followup-every", "10", "--wait", "1", "--interval", "1", "--lease", "1.5",
    "--every", "1", "--concurrency", "8", "--json",
)  # fmt: skip


def test_redrive_claims_the_killed_job_again_and_drains_the_backlog() -> None:
    code, out = script("redrive.py", *SMALL)
    assert code == 0, out
    assert out["ok"] and all(out["checks"].values()), out["checks"]
    r = out["redrive"]
    assert r["attempts"] == 2 and r["replies"] == 1
    assert r["reconciler_advanced"] >= 1  # the reconciler claimed it, nothing else did
    assert 0 <= r["expiry_to_claim"] <= 2 * r["interval"]
    assert r["expiry_to_claim"] <= r["expiry_to_start"] <= r["expiry_to_reply"]
    assert out["parked_jobs"] == out["messages"] == 55  # 50 + a second message in 5
    assert out["answered_once"] == out["replies"] == out["trigger_links"] == 55
    assert out["conversations_in_order"] == 50
    assert out["lost"] == out["duplicated"] == out["reordered"] == out["overlapping"] == 0
    for phase in ("wait", "kill", "drain"):
        passes = out["passes"][phase]
        assert passes["passes"] >= 1
        assert set(passes["max_pages"]) == {"windows", "running", "answered", "expired", "parked"}
    # The paused agent's 55 waiting jobs are left out of every kind of trouble.
    assert out["passes"]["wait"]["max_rows"]["parked"] == 0
    assert isinstance(out["wait"]["commits"], int)
