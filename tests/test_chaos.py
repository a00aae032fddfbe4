"""The CI-sized chaos run: real load on PostgreSQL, workers SIGKILLed, Redis flushed and
restarted, provider storms; nothing lost, duplicated, reordered or overlapping."""

from __future__ import annotations

import pytest

from agentq.store.migrate import upgrade
from ops.chaos.chaos import ChaosConfig, check_database, run_chaos
from tests.conftest import apply_env, create_pg_database, drop_pg_database


@pytest.mark.integration
@pytest.mark.slow
def test_small_chaos_run_has_no_anomalies(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    url = create_pg_database()
    try:
        cfg = ChaosConfig(
            messages=200,
            conversations=30,
            workers=3,
            duration=20.0,
            kill_every=5.0,
            flushall=True,
            redis_restart=True,
            storms=True,
            slow=True,
            pg_restart=False,
            settle_timeout=240.0,
            seed=20261124,
            database_url=url,
            log_dir=f"{tmp_path}/logs",
        )
        lines: list[str] = []
        report = run_chaos(cfg, echo=lines.append)
        with capsys.disabled():
            print("\n" + "\n".join(lines))
        a = report.anomalies
        assert report.settled, "the system never settled"
        assert a.accepted_messages == 200
        assert (a.lost, a.duplicated, a.reordered, a.overlapping, a.inconsistent) == (0, 0, 0, 0, 0)
        assert report.kills >= 3
        assert "redis FLUSHALL" in report.faults
        assert report.flushall_recovery_seconds is not None
    finally:
        drop_pg_database(url)


def test_checker_counts_a_lost_and_a_duplicated_message(sqlite_url: str, base_env: dict) -> None:
    """The checker itself: a message with no job is lost; one in two jobs is duplicated."""
    import uuid

    from agentq.client import Client
    from agentq.store.models import Job, MessageJob
    from agentq.store.session import transaction
    from tests.helpers import make_dm

    url = sqlite_url.replace("agentq.db", f"checker-{uuid.uuid4().hex[:6]}.db")
    upgrade(url)
    apply_env({**base_env, "AGENTQ_DATABASE_URL": url})
    client = Client()
    conv, user, agent_id = make_dm(
        client, settings={"debounce_seconds": 60, "max_wait_seconds": 60}
    )
    client.post_message(conv.id, user.id, "never dispatched")
    b = client.post_message(conv.id, user.id, "in two jobs")
    with transaction() as s:
        for _ in range(2):
            job = Job(
                conversation_id=conv.id, agent_id=agent_id, trigger_message_id=b.id, status="failed"
            )
            s.add(job)
            s.flush()
            s.add(
                MessageJob(
                    message_id=b.id,
                    job_id=job.id,
                    agent_id=agent_id,
                    conversation_id=conv.id,
                    status="trigger",
                )
            )
    found = check_database()
    assert found.lost >= 1 and any("seq 1" in e for e in found.examples["lost"])
    assert found.duplicated == 1
    assert not found.ok
