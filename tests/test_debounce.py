"""Debounce: a burst coalesces into one job; a steady stream fires by the max wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from agentq import turn
from agentq.client import Client
from agentq.store.models import Conversation
from agentq.turn import debounce
from tests.conftest import Live
from tests.helpers import jobs_of, make_dm, replies_of, trigger_links, wait_until

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def conv_at(first: float, last: float, **settings: float) -> Conversation:
    return Conversation(
        pending_since=T0 + timedelta(seconds=first),
        last_message_at=T0 + timedelta(seconds=last),
        settings=settings,
    )


def test_due_is_debounce_after_the_last_message() -> None:
    c = conv_at(0, 3, debounce_seconds=2, max_wait_seconds=10)
    assert debounce.due_at(c) == T0 + timedelta(seconds=5)


def test_due_is_capped_by_max_wait_after_the_first_message() -> None:
    c = conv_at(0, 9.5, debounce_seconds=2, max_wait_seconds=10)
    assert debounce.due_at(c) == T0 + timedelta(seconds=10)


def test_nothing_pending_is_never_due() -> None:
    assert debounce.due_at(Conversation(settings={})) is None


def test_dispatch_waits_for_the_window_then_covers_every_pending_message(db: str) -> None:
    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0.5, "max_wait_seconds": 5})
    posted = [client.post_message(conv.id, user.id, f"m{i}") for i in range(3)]
    early = turn.dispatch_due(conv.id)
    assert early.due is not None and early.jobs == []
    time.sleep(0.6)
    outcome = turn.dispatch_due(conv.id)
    assert len(outcome.jobs) == 1 and outcome.handled == 3
    assert trigger_links(outcome.jobs[0]) == [m.seq for m in posted]
    again = turn.dispatch_due(conv.id)
    assert again.jobs == [] and again.due is None  # idempotent: nothing left pending


@pytest.mark.integration
def test_burst_of_five_messages_makes_one_job(live: Live) -> None:
    client = live.client
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 1.0, "max_wait_seconds": 10})
    for i in range(5):
        client.post_message(conv.id, user.id, f"part {i}")
        time.sleep(0.15)
    wait_until(lambda: replies_of(conv.id), timeout=20, what="the reply")
    time.sleep(1.5)  # anything extra would show up by now
    jobs = jobs_of(conv.id)
    assert len(jobs) == 1
    assert trigger_links(jobs[0].id) == [1, 2, 3, 4, 5]
    assert len(replies_of(conv.id)) == 1


#: the steady stream's gap between messages (s)
GAP = 0.3


@pytest.mark.integration
@pytest.mark.slow
def test_steady_stream_fires_by_max_wait_not_after_the_burst(live: Live) -> None:
    client = live.client
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0.8, "max_wait_seconds": 3})
    start = time.monotonic()
    for i in range(15):
        client.post_message(conv.id, user.id, f"tick {i}")
        time.sleep(max(0.0, (i + 1) * GAP - (time.monotonic() - start)))
    jobs = wait_until(lambda: len(jobs_of(conv.id)) >= 2 and jobs_of(conv.id), timeout=20)
    first = jobs[0]
    seqs = trigger_links(first.id)
    msgs = {m.seq: m for m in client.list_messages(conv.id)}
    waited = (first.created_at - msgs[1].created_at).total_seconds()
    # Gaps of 0.3 s never satisfy a 0.8 s debounce: only the max wait can have fired the job,
    # and it did so while the stream was still going.
    assert seqs[0] == 1 and seqs[-1] < 15
    assert first.created_at < msgs[15].created_at
    assert waited >= 2.9
    assert sum(len(trigger_links(j.id)) for j in jobs) == 15


def test_a_timer_firing_early_rearms_and_dispatch_claims_in_the_same_step(db: str) -> None:
    from agentq.runtime import timers

    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0.5, "max_wait_seconds": 5})
    client.post_message(conv.id, user.id, "hello")
    assert timers.armed(conv.id)  # the post armed the conversation's one timer

    early = turn.fire(conv.id)  # as if a stale timer fired before the window ended
    assert early.due is not None and early.jobs == []
    assert timers.armed(conv.id)  # re-armed for the window's end

    time.sleep(0.6)
    due = turn.fire(conv.id)
    assert len(due.jobs) == 1
    (job,) = jobs_of(conv.id)
    assert job.status == "active" and job.lease_token == 1  # claimed with the dispatch
    assert timers.armed(conv.id) is None
