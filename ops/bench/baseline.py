"""Bare-Celery baselines for `agentq bench`, on the same Redis and database as agentq.

- `bench.noop`: a task that only counts itself (one Redis INCR), for raw tasks/s.
- `bench.pipeline`: one task a message, the same database writes as an agentq turn
  (job row, the LLM call, reply message, `llm_messages` row, trigger and reply links),
  without debounce, ordering, leases or events. What a hand-written pipeline would do.

Configured by `AGENTQ_BENCH_REDIS_URL`, `AGENTQ_BENCH_DATABASE_URL` and `LLM_ENDPOINT`;
run by `agentq bench` from a checkout (the repository root on PYTHONPATH) as
`celery -A ops.bench.baseline worker -Q agentq.bench`. Not shipped in the package.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from celery import Celery
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.exc import DBAPIError

#: the queue the baseline worker consumes; agentq's workers never look at it
QUEUE = "agentq.bench"
NOOP = "bench.noop"
PIPELINE = "bench.pipeline"
#: the Redis key the no-op task increments
NOOP_COUNTER = "agentq:bench:noop"


def make_app(redis_url: str | None = None) -> Celery:
    """The baseline app, configured like agentq's (acks_late, prefetch 1, JSON) so the
    comparison measures agentq's own work and nothing else."""
    app = Celery("bench", broker=redis_url or os.environ.get("AGENTQ_BENCH_REDIS_URL"))
    app.conf.update(
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
    )
    return app


app = make_app()
_local = threading.local()
_redis: Any = None
_sender: Celery | None = None


def sender() -> Celery:
    """The app producers send with (this module's `app` is configured at import time,
    before the benchmark has chosen its Redis)."""
    global _sender
    if _sender is None:
        _sender = make_app(os.environ["AGENTQ_BENCH_REDIS_URL"])
    return _sender


def _redis_client() -> Any:
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis(
            connection_pool=redis.BlockingConnectionPool.from_url(
                os.environ["AGENTQ_BENCH_REDIS_URL"], max_connections=256
            )
        )
    return _redis


def _engine() -> Any:
    from agentq.store.session import get_engine

    return get_engine(os.environ["AGENTQ_BENCH_DATABASE_URL"])


def _http() -> httpx.Client:
    client = getattr(_local, "http", None)
    if client is None:
        client = _local.http = httpx.Client(timeout=60)
    return client


def _now() -> datetime:
    return datetime.now(UTC)


@app.task(name=NOOP)
def noop() -> None:
    _redis_client().incr(NOOP_COUNTER)


def post(conversation_id: uuid.UUID, author_id: uuid.UUID, content: str) -> uuid.UUID:
    """Producer side: insert the message (next seq) and send its task."""
    from agentq.store.models import Conversation, Message

    with _engine().begin() as conn:
        seq = conn.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(last_seq=Conversation.last_seq + 1, handled_seq=Conversation.last_seq + 1)
            .returning(Conversation.last_seq)
        ).scalar_one()
        now = _now()
        mid = uuid.uuid4()
        conn.execute(
            insert(Message).values(
                id=mid,
                conversation_id=conversation_id,
                seq=seq,
                author_id=author_id,
                role="user",
                content=content,
                created_at=now,
                updated_at=now,
            )
        )
    sender().send_task(PIPELINE, args=[str(mid)], queue=QUEUE)
    return mid


# Retried as agentq's tasks are (agentq.worker.RETRY, not imported: its signal handlers
# would run in this worker): at 2 x 200 threads the two processes' pools (10 + 40 each)
# can ask for more connections than PostgreSQL's 100.
@app.task(
    name=PIPELINE,
    autoretry_for=(DBAPIError, ConnectionError),
    retry_backoff=0.5,
    retry_backoff_max=10,
    retry_jitter=True,
    max_retries=8,
)
def pipeline(message_id: str) -> None:
    from agentq.store.models import Conversation, Job, LLMMessage, Message, MessageJob, Participant

    mid = uuid.UUID(message_id)
    engine = _engine()
    with engine.begin() as conn:
        msg = conn.execute(
            select(Message.conversation_id, Message.content).where(Message.id == mid)
        ).one()
        agent_id, author = conn.execute(
            select(Participant.agent_id, Participant.id).where(
                Participant.conversation_id == msg.conversation_id,
                Participant.agent_id.is_not(None),
            )
        ).one()
        # A retry (below) may follow a committed first transaction: the job's id comes from
        # the message's, and its rows are written once.
        jid = uuid.uuid5(mid, "bench-job")
        now = _now()
        conn.execute(
            upsert(Job)
            .on_conflict_do_nothing()
            .values(
                id=jid,
                conversation_id=msg.conversation_id,
                agent_id=agent_id,
                trigger_message_id=mid,
                status="active",
                attempts=1,
                max_attempts=1,
                created_at=now,
                started_at=now,
            )
        )
        conn.execute(
            upsert(MessageJob)
            .on_conflict_do_nothing()
            .values(
                message_id=mid,
                job_id=jid,
                agent_id=agent_id,
                conversation_id=msg.conversation_id,
                status="trigger",
            )
        )
    response = _http().post(
        os.environ["LLM_ENDPOINT"].rstrip("/") + "/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": msg.content}]},
        headers={"Authorization": "Bearer bench"},
    )
    response.raise_for_status()
    content = response.json()["choices"][0]["message"]["content"]
    with engine.begin() as conn:
        seq = conn.execute(
            update(Conversation)
            .where(Conversation.id == msg.conversation_id)
            .values(last_seq=Conversation.last_seq + 1, handled_seq=Conversation.last_seq + 1)
            .returning(Conversation.last_seq)
        ).scalar_one()
        rid = uuid.uuid4()
        now = _now()
        conn.execute(
            insert(Message).values(
                id=rid,
                conversation_id=msg.conversation_id,
                seq=seq,
                author_id=author,
                role="assistant",
                content=content,
                reply_to_job_id=jid,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(insert(LLMMessage).values(message_id=rid, role="assistant", content=content))
        conn.execute(
            insert(MessageJob).values(
                message_id=rid,
                job_id=jid,
                agent_id=agent_id,
                conversation_id=msg.conversation_id,
                status="reply",
            )
        )
        conn.execute(update(Job).where(Job.id == jid).values(status="completed", finished_at=now))
