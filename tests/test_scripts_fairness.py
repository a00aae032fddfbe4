"""Smoke run of issue 16's fair-shares script (ops/scripts/fairness.py) at a tiny size, on
the suite's PostgreSQL server, with and without a tenant cap: it runs end to end, every
message of both tenants is answered exactly once, and the figures parse. Its latencies are
figures to read, not assertions."""

from __future__ import annotations

import pytest

from tests.test_scripts import script

TINY = (
    "--a-messages", "40", "--a-conversations", "8", "--b-messages", "4",
    "--b-every", "0.2", "--b-conversations", "2", "--llm-latency", "0.2",
    "--workers", "1", "--concurrency", "8", "--json",
)  # fmt: skip


@pytest.mark.parametrize("cap", ["0", "2"])
def test_fairness_answers_every_message_once(cap: str) -> None:
    code, out = script("fairness.py", *TINY, "--tenant-cap", cap)
    assert code == 0, out
    assert out["ok"] and out["tenant_cap"] == int(cap)
    for name, sent in (("a", 40), ("b", 4)):
        t = out[name]
        assert t["messages"] == t["answered_once"] == t["latency_ms"]["count"] == sent
        assert 1 <= t["jobs"] <= sent
        assert {"p50", "p95", "p99", "max"} <= set(t["latency_ms"])
    assert out["lost"] == out["duplicated"] == out["reordered"] == out["overlapping"] == 0
    assert out["a_drain_seconds"] > 0
    assert set(out["b_phases_ms"]) == {"window", "claim", "llm_queue", "llm_call"}
    assert set(out["queues_during_b"]) == {"agentq.control", "agentq.llm"}
