"""Property-based tests (hypothesis) of the debounce and ordering rules.

The pure rule (`debounce.due_at`) is checked on arbitrary arrivals. The database rules are
checked by driving `messages.post_message`, `turn.dispatch_due`, `turn.advance`
and `turn.store_result`/`turn.complete` directly, on SQLite and PostgreSQL, with a clock
the test moves: whatever the interleaving of arrivals, dispatches and completions, the
jobs' trigger sets partition the messages, in seq order, each made exactly when the
window said so, with one open job at a time.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import agentq.turn  # noqa: F401 - imported so that the clock below reaches its steps
from agentq import turn
from agentq.client import Client
from agentq.providers import ChatResult
from agentq.runtime.embedded import EmbeddedRedis
from agentq.store import models
from agentq.store.models import OPEN_JOB_STATES, Conversation, Job, Message, MessageJob
from agentq.store.session import reader
from agentq.turn import debounce
from agentq.turn.outcome import Effects
from tests.conftest import FAST, apply_env

T0 = datetime(2030, 1, 1, tzinfo=UTC)

seconds = st.floats(min_value=0, max_value=12, allow_nan=False, allow_infinity=False)


# -- the pure rule -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(seconds, min_size=1, max_size=20),
    debounce_s=st.floats(min_value=0, max_value=5),
    extra=st.floats(min_value=0, max_value=10),
)
def test_due_time_is_within_the_window_and_only_moves_later(
    gaps: list[float], debounce_s: float, extra: float
) -> None:
    max_wait = debounce_s + extra
    conv = Conversation(settings={"debounce_seconds": debounce_s, "max_wait_seconds": max_wait})
    now = T0
    previous: datetime | None = None
    for gap in gaps:
        now += timedelta(seconds=gap)
        conv.pending_since = conv.pending_since or now
        conv.last_message_at = now
        due = debounce.due_at(conv)
        assert due is not None
        # never later than max_wait after the first, nor debounce after the last
        assert due <= conv.pending_since + timedelta(seconds=max_wait)
        assert due <= now + timedelta(seconds=debounce_s)
        # never before the first message, and a quiet spell of `debounce` is always waited
        # for unless max_wait cuts it short
        assert due >= conv.pending_since
        assert due == now + timedelta(seconds=debounce_s) or due == conv.pending_since + timedelta(
            seconds=max_wait
        )
        # due times only move later: an armed timer never fires too late
        if previous is not None:
            assert due >= previous
        previous = due


# -- the database rules --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


pytestmark = pytest.mark.usefixtures("restored_env")


@pytest.fixture
def clock(module_db: str, module_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch) -> Clock:
    # No worker listens on the module's Redis: the test itself plays the tasks' part.
    apply_env({**FAST, "AGENTQ_DATABASE_URL": module_db, "AGENTQ_REDIS_URL": module_redis.url})
    fake = Clock()
    real = models.utcnow
    for name, module in list(sys.modules.items()):
        if name.startswith("agentq") and getattr(module, "utcnow", None) is real:
            monkeypatch.setattr(module, "utcnow", fake)
    return fake


def _open_jobs(conv_id: uuid.UUID) -> list[Job]:
    with reader() as s:
        return list(
            s.scalars(
                select(Job).where(Job.conversation_id == conv_id, Job.status.in_(OPEN_JOB_STATES))
            )
        )


def _jobs(conv_id: uuid.UUID) -> list[tuple[Job, list[int]]]:
    with reader() as s:
        jobs = list(
            s.scalars(
                select(Job).where(Job.conversation_id == conv_id).order_by(Job.created_at, Job.id)
            )
        )
        return [
            (
                j,
                list(
                    s.scalars(
                        select(Message.seq)
                        .join(MessageJob, MessageJob.message_id == Message.id)
                        .where(MessageJob.job_id == j.id, MessageJob.status == "trigger")
                        .order_by(Message.seq)
                    )
                ),
            )
            for j in jobs
        ]


def _finish_one(conv_id: uuid.UUID) -> bool:
    """Play the LLM task for the conversation's running job (claiming the next if none)."""
    running = [j for j in _open_jobs(conv_id) if j.status == "active"]
    if running:
        job_id, token = running[0].id, running[0].lease_token
    else:
        claim = turn.advance(conv_id)
        if claim is None:
            return False
        job_id, token = claim.job_id, claim.token
    assert turn.store_result(job_id, token, ChatResult(content="ok", model="m"))
    assert turn.complete(job_id)
    assert not turn.complete(job_id)  # run twice, it writes once
    return True


def _crash_one(clock: Clock, conv_id: uuid.UUID) -> None:
    """The running job's worker dies: past its lease the job is claimed again, and the
    old claim's answer is refused (fencing)."""
    from agentq.config import get_settings

    running = [j for j in _open_jobs(conv_id) if j.status == "active"]
    if not running:
        return
    job = running[0]
    s = get_settings()  # past the claim's lease (its worker never took it up here)
    clock.now += timedelta(seconds=max(s.job_lease_seconds, s.claim_pickup_seconds) + 1)
    turn.advance(conv_id)
    assert not turn.store_result(job.id, job.lease_token, ChatResult(content="late", model="m"))


op = st.one_of(
    st.tuples(st.just("post"), seconds, st.integers(1, 3)),
    st.tuples(st.just("dispatch"), seconds, st.just(0)),
    st.tuples(st.just("finish"), seconds, st.just(0)),
    st.tuples(st.just("crash"), seconds, st.just(0)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(op, min_size=1, max_size=30),
    debounce_s=st.sampled_from([0.0, 0.5, 2.0]),
    extra=st.sampled_from([0.0, 1.0, 6.0]),
)
def test_any_interleaving_partitions_messages_into_ordered_jobs(
    clock: Clock, ops: list[tuple[str, float, int]], debounce_s: float, extra: float
) -> None:
    max_wait = debounce_s + extra
    client = Client()
    agent = client.create_agent(f"prop{uuid.uuid4().hex[:10]}", rate_limit_per_minute=100_000)
    conv = client.create_conversation(
        "dm", settings={"debounce_seconds": debounce_s, "max_wait_seconds": max_wait}
    )
    client.add_participant(conv.id, agent=agent.id)
    user = client.add_participant(conv.id, user_id="prop-user")

    # The model: messages posted and not yet in a job, with their arrival times.
    pending: list[tuple[int, datetime]] = []
    posted: list[int] = []
    known_jobs = 0

    def model_due() -> datetime:
        return min(
            pending[-1][1] + timedelta(seconds=debounce_s),
            pending[0][1] + timedelta(seconds=max_wait),
        )

    for kind, gap, n in ops:
        clock.now += timedelta(seconds=gap)
        dispatched: Effects | None = None
        if kind == "post":
            for i in range(n):
                msg = client.post_message(conv.id, user.id, f"m{len(posted)}-{i}")
                pending.append((msg.seq, clock.now))
                posted.append(msg.seq)
        elif kind == "dispatch":
            dispatched = turn.dispatch_due(conv.id)
        elif kind == "finish":
            _finish_one(conv.id)
        else:
            _crash_one(clock, conv.id)
        jobs = _jobs(conv.id)
        new = jobs[known_jobs:]
        if new:
            # A job appears only once the window is over, and covers everything pending.
            assert pending and clock.now >= model_due()
            ((job, seqs),) = new
            assert seqs == [seq for seq, _ in pending]
            pending.clear()
            known_jobs = len(jobs)
        elif dispatched is not None:
            if pending:
                assert clock.now < model_due()
                assert dispatched.due == model_due()
                assert dispatched.due <= pending[0][1] + timedelta(seconds=max_wait)
            else:
                assert dispatched.due is None
        assert len(_open_jobs(conv.id)) <= 1  # one job of a conversation at a time

    # Drain: the window ends, every job runs in turn.
    clock.now += timedelta(seconds=max_wait + 1)
    turn.dispatch_due(conv.id)
    for _ in range(len(posted) + 2):
        if not _finish_one(conv.id):
            break

    jobs = _jobs(conv.id)
    assert [seq for _, seqs in jobs for seq in seqs] == posted  # a partition, in seq order
    assert all(seqs for _, seqs in jobs)
    # A job fails only when workers died under all its attempts; it then says so.
    assert all(j.status in ("completed", "failed") for j, _ in jobs)
    with reader() as s:
        replies = {
            m.reply_to_job_id: m.seq
            for m in s.scalars(
                select(Message).where(
                    Message.conversation_id == conv.id, Message.reply_to_job_id.is_not(None)
                )
            )
        }
        c = s.get_one(Conversation, conv.id)
        assert c.handled_seq == c.last_seq and c.pending_since is None
    done = [(j, seqs) for j, seqs in jobs if j.status == "completed"]
    assert set(replies) == {j.id for j, _ in done}  # one reply a completed job, no other
    reply_seqs = [replies[j.id] for j, _ in done]
    assert reply_seqs == sorted(reply_seqs)  # replies in the order of their triggers
    for (_, seqs), reply in zip(done, reply_seqs, strict=True):
        assert reply > max(seqs)
