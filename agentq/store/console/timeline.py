"""A conversation's timeline: its messages in seq order and the jobs that answer them,
each with its triggers, its reply and its attempts."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from agentq.states import LinkStatus
from agentq.store.console.conversations import conversation
from agentq.store.console.rows import JOB_COLUMNS, MessageRow, Timeline, TimelineJob, job_row
from agentq.store.models import Agent, Event, Job, Message, MessageJob, Participant
from agentq.store.session import reader

#: events of a job's attempts shown on the timeline
ATTEMPT_EVENTS = ("agent.responding", "job.retrying", "job.failed", "job.completed")


def timeline(
    conversation_id: uuid.UUID, *, limit: int = 1000, before_seq: int | None = None
) -> Timeline | None:
    """The conversation's newest `limit` messages (those before `before_seq` if given), in
    seq order, and the jobs that answer them with their triggers, replies and attempts."""
    conv = conversation(conversation_id)
    if conv is None:
        return None
    top = conv.last_seq + 1 if before_seq is None else before_seq
    low = max(top - limit, 1)
    msgs_q = (
        select(Message, Participant.display_name, Participant.kind)
        .outerjoin(Participant, Participant.id == Message.author_id)
        .where(Message.conversation_id == conversation_id, Message.seq >= low, Message.seq < top)
        .order_by(Message.seq)
    )
    trig = (
        select(MessageJob.job_id, Message.seq, Message.created_at)
        .join(Message, Message.id == MessageJob.message_id)
        .where(
            MessageJob.conversation_id == conversation_id,
            MessageJob.status == LinkStatus.TRIGGER,
        )
    )
    jobs_q = (
        select(*JOB_COLUMNS)
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.conversation_id == conversation_id)
        .order_by(Job.created_at, Job.id)
    )
    replies_q = select(Message.reply_to_job_id, Message.seq, Message.created_at).where(
        Message.conversation_id == conversation_id, Message.reply_to_job_id.is_not(None)
    )
    events_q = (
        select(Event.type, Event.created_at, Event.payload)
        .where(Event.conversation_id == conversation_id, Event.type.in_(ATTEMPT_EVENTS))
        .order_by(Event.id)
    )
    with reader() as s:
        messages = [
            MessageRow(
                m.id,
                m.seq,
                m.role,
                name,
                kind,
                m.content,
                m.created_at,
                m.reply_to_job_id,
                m.deleted_at is not None,
            )
            for m, name, kind in s.execute(msgs_q).all()
        ]
        jobs = {r[0]: TimelineJob(job_row(r, conv.tenant)) for r in s.execute(jobs_q).all()}
        for job_id, seq, at in s.execute(trig).all():
            tj = jobs.get(job_id)
            if tj is not None:
                tj.trigger_seqs.append(seq)
                if tj.first_trigger_at is None or at < tj.first_trigger_at:
                    tj.first_trigger_at = at
        for replied, seq, at in s.execute(replies_q).all():
            if replied in jobs:
                jobs[replied].reply_seq, jobs[replied].reply_at = seq, at
        for type_, at, payload in s.execute(events_q).all():
            of_job = _uuid(payload.get("job_id"))
            if of_job is not None and of_job in jobs:
                jobs[of_job].history.append((type_, at, payload))
    for tj in jobs.values():
        tj.trigger_seqs.sort()
    shown = [tj for tj in jobs.values() if not tj.trigger_seqs or low <= tj.trigger_seqs[-1] < top]
    return Timeline(conv, messages, shown, low if low > 1 else None)


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None
