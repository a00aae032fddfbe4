"""Jobs, for operators and producers: look one up, find a message's jobs, retry a failed one."""

from __future__ import annotations

import uuid

from agentq import ids
from agentq.errors import JobNotFound, JobNotRetryable
from agentq.schemas import JobOut, MessageOut
from agentq.states import RETRYABLE_JOB_STATES
from agentq.store import conversations, jobs, messages
from agentq.store.session import reader, transaction
from agentq.turn import effects
from agentq.turn.outcome import Effects, Then


def get_job(job_id: uuid.UUID | str) -> JobOut:
    """The job with the seqs of the messages it answers and its reply, if written."""
    jid = ids.job(job_id)
    with reader() as tx:
        row = jobs.get(tx, jid)
        if row is None:
            raise JobNotFound(job_id)
        out = JobOut.model_validate(row)
        out.trigger_seqs = jobs.trigger_seqs(tx, jid)
        reply = messages.reply_of(tx, jid)
        out.reply = MessageOut.model_validate(reply) if reply else None
        return out


def jobs_for_message(message_id: uuid.UUID | str) -> list[uuid.UUID]:
    """The jobs that answer a message (none for an unknown id)."""
    mid = ids.maybe(message_id)
    if mid is None:
        return []
    with reader() as tx:
        return jobs.of_message(tx, mid)


def retry_job(job_id: uuid.UUID | str) -> JobOut:
    """Give a failed (or cancelled) job a fresh set of attempts; it runs in its turn, its
    place among the conversation's waiting jobs kept (it answers the messages it was made
    for, before later ones).

    A job whose messages another job answers (an interrupt carried them into it) or that
    answers none any more (rolled back) raises JobNotRetryable: retrying it would answer
    them twice, or nothing.
    """
    jid = ids.job(job_id)
    with transaction() as tx:
        where = jobs.route(tx, jid)
        if where is None:
            raise JobNotFound(job_id)
        conversations.lock(tx, where.conversation_id)  # the lock order: conversation first
        row = jobs.lock(tx, jid)
        if row is None:
            raise JobNotFound(job_id)
        if row.status not in RETRYABLE_JOB_STATES:
            raise JobNotRetryable(jid, row.status)
        other = jobs.carried_into(tx, jid)
        if other is not None:
            raise JobNotRetryable(jid, row.status, f"its messages are answered by job {other}")
        if not jobs.triggers(tx, jid):
            raise JobNotRetryable(jid, row.status, "it answers no message any more (rolled back)")
        jobs.retry(tx, jid)
    effects.run(Effects(row.conversation_id, then=Then.ADVANCE))
    return get_job(jid)
