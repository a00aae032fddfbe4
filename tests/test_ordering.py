"""Per-conversation ordering under load: one job at a time, replies in trigger order."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from agentq.store.models import Job, Message, MessageJob
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMServer
from tests.conftest import Live
from tests.helpers import make_dm, wait_until
from tests.profile_support import declare_profile

CONVERSATIONS = 50
MESSAGES = 10


@pytest.fixture(scope="module")
def jittery_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.02, jitter=0.4, seed=7) as server:
        yield server


@pytest.mark.integration
@pytest.mark.slow
def test_fifty_conversations_stay_ordered_across_two_workers(
    live: Live, jittery_llm: FakeLLMServer
) -> None:
    client = live.client
    convs = [
        make_dm(
            client,
            settings={"debounce_seconds": 0.1, "max_wait_seconds": 0.5},
            model_config={"profile": declare_profile(jittery_llm.url)},
        )
        for _ in range(CONVERSATIONS)
    ]
    rng = random.Random(3)

    def produce(batch: list) -> None:
        for i in range(MESSAGES):
            for conv, user, _ in batch:
                client.post_message(conv.id, user.id, f"message {i}")
            time.sleep(rng.uniform(0.0, 0.3))

    threads = [threading.Thread(target=produce, args=(convs[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    conv_ids = [c.id for c, _, _ in convs]

    def all_answered() -> bool:
        with reader() as s:
            open_ = s.scalar(
                select(Job.id)
                .where(Job.conversation_id.in_(conv_ids), Job.status.not_in(("completed",)))
                .limit(1)
            )
            pending = s.scalar(
                select(Message.id)
                .where(
                    Message.conversation_id.in_(conv_ids),
                    Message.role == "user",
                    ~Message.id.in_(select(MessageJob.message_id)),
                )
                .limit(1)
            )
            return open_ is None and pending is None

    wait_until(all_answered, timeout=180, every=0.5, what="every message answered")

    with reader() as s:
        for conv_id in conv_ids:
            jobs = list(
                s.scalars(
                    select(Job).where(Job.conversation_id == conv_id).order_by(Job.started_at)
                )
            )
            # No two jobs of a conversation ran at the same time.
            for a, b in zip(jobs, jobs[1:], strict=False):
                assert a.finished_at <= b.started_at, f"jobs overlap in {conv_id}"
            # Every user message is covered by exactly one job.
            links = s.execute(
                select(Message.seq, MessageJob.job_id)
                .join(MessageJob, MessageJob.message_id == Message.id)
                .where(Message.conversation_id == conv_id, MessageJob.status == "trigger")
            ).all()
            seqs = sorted(seq for seq, _ in links)
            users = list(
                s.scalars(
                    select(Message.seq)
                    .where(Message.conversation_id == conv_id, Message.role == "user")
                    .order_by(Message.seq)
                )
            )
            assert seqs == users
            # Replies come in the order of the messages that caused them.
            last_trigger = {}
            for seq, job_id in links:
                last_trigger[job_id] = max(seq, last_trigger.get(job_id, 0))
            replies = list(
                s.execute(
                    select(Message.seq, Message.reply_to_job_id)
                    .where(Message.conversation_id == conv_id, Message.role == "assistant")
                    .order_by(Message.seq)
                )
            )
            assert len(replies) == len(jobs)
            order = [last_trigger[job_id] for _, job_id in replies]
            assert order == sorted(order)
            # ...and each reply comes after the messages it answers.
            assert all(reply_seq > last_trigger[job_id] for reply_seq, job_id in replies)
