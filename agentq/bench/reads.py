"""What the benchmark reads back from the database: how far its conversations got and
how long each turn took, from the timestamps agentq stored."""

from __future__ import annotations

import uuid
from datetime import timedelta


def settled(conv_ids: list[uuid.UUID]) -> bool:
    """Every message of these conversations handled and no job of theirs unfinished."""
    from sqlalchemy import func, select

    from agentq.store.models import Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        behind = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.id.in_(conv_ids), Conversation.handled_seq < Conversation.last_seq)
        )
        unfinished = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.conversation_id.in_(conv_ids),
                Job.status.in_(("waiting", "active", "delayed")),
            )
        )
    return not behind and not unfinished


def backlog(conv_ids: list[uuid.UUID]) -> str:
    """What keeps these conversations from settling (for the timeout message)."""
    from sqlalchemy import func, select

    from agentq.store.models import Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        behind = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.id.in_(conv_ids), Conversation.handled_seq < Conversation.last_seq)
        )
        jobs = dict(
            s.execute(
                select(Job.status, func.count())
                .where(Job.conversation_id.in_(conv_ids))
                .group_by(Job.status)
            ).all()
        )
    return f"{behind} conversations with unhandled messages, jobs by status {jobs}"


def turns_of(conv_ids: list[uuid.UUID], debounce: float, max_wait: float) -> list[dict[str, float]]:
    """Each completed job of these conversations, timed from the database (ms)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import aliased

    from agentq.store.models import Job, Message, MessageJob
    from agentq.store.session import reader

    reply = aliased(Message)
    q = (
        select(
            Job.created_at,
            Job.started_at,
            Job.result,
            reply.created_at,
            func.min(Message.created_at),
            func.max(Message.created_at),
        )
        .join(MessageJob, (MessageJob.job_id == Job.id) & (MessageJob.status == "trigger"))
        .join(Message, Message.id == MessageJob.message_id)
        .join(reply, reply.reply_to_job_id == Job.id)
        .where(Job.conversation_id.in_(conv_ids), Job.status == "completed")
        .group_by(Job.id, reply.created_at)
    )
    out = []
    with reader() as s:
        for created, started, result, replied, first, last in s.execute(q):
            due = min(last + timedelta(seconds=debounce), first + timedelta(seconds=max_wait))
            window = (due - first).total_seconds() * 1000
            llm = float((result or {}).get("latency_ms", 0))
            e2e = (replied - first).total_seconds() * 1000
            out.append(
                {
                    "e2e": e2e,
                    "debounce": (created - first).total_seconds() * 1000,
                    "queue": (started - created).total_seconds() * 1000,
                    "llm": llm,
                    "completion": (replied - started).total_seconds() * 1000 - llm,
                    "overhead": e2e - window - llm,
                    "fire_error": (created - due).total_seconds() * 1000,
                    "first": first.timestamp(),
                    "replied": replied.timestamp(),
                }
            )
    return out


def pipeline_done(conv_ids: list[uuid.UUID]) -> bool:
    from sqlalchemy import func, select

    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        done = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.conversation_id.in_(conv_ids), Job.status == "completed")
        )
    return done == len(conv_ids)
