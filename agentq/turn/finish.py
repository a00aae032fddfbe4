"""A job's life after it is claimed: the LLM call, completion, failure, retry.

Every step is idempotent and fenced by the claim's `lease_token`, so a redelivered or
duplicated task, or a worker that outlived its lease, changes nothing twice:

- `run_job` stores the provider's answer only while its claim is current,
- `complete` writes the reply only while the job is active, under the job's row lock,
  and `messages.reply_to_job_id` is UNIQUE, so a job has one reply at most.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, and_, bindparam, case, exists, func, insert, select, update
from sqlalchemy.orm import Session

from agentq import events
from agentq import logging as agentq_logging
from agentq.config import get_settings
from agentq.errors import JobNotFound, JobNotRetryable, ProviderError
from agentq.ops import metrics
from agentq.ops.conversations import load_conversation
from agentq.providers import ChatRequest, ChatResult, call_with_retries, get_provider
from agentq.runtime import broker, limits
from agentq.schemas import JobOut, MessageOut
from agentq.store import tables
from agentq.store.models import (
    Agent,
    Job,
    Message,
    MessageJob,
    utcnow,
)
from agentq.store.session import ROW_LOCK, reader, transaction
from agentq.turn import debounce
from agentq.turn import dispatch as ordering
from agentq.turn import post as messages
from agentq.turn.context import build_messages, chat_request
from agentq.turn.post import append_message
from agentq.turn.responders import autonomous

log = logging.getLogger(__name__)

A, J = tables.agents, tables.jobs

#: how much of a failure reason is kept and shown in the conversation
REASON_MAX = 300


@dataclass
class Call:
    job_id: uuid.UUID
    conversation_id: uuid.UUID
    token: int
    provider: str
    request: ChatRequest
    #: the conversation may cancel this call (double-texting interrupt or rollback)
    cancellable: bool = False
    #: the answer is stored already (the last run died before writing it): just write it
    answered: bool = False


_C = tables.conversations
_PREPARE = (
    select(
        J.c.status,
        J.c.lease_token,
        J.c.conversation_id,
        J.c.result,
        A.c.id,
        A.c.name,
        A.c.role,
        A.c.backstory,
        A.c.goal,
        A.c.system_prompt,
        A.c.provider,
        A.c.model_config,
        _C.c.settings,
    )
    .join_from(J, A, A.c.id == J.c.agent_id)
    .join(_C, _C.c.id == J.c.conversation_id)
    .where(J.c.id == bindparam("job_id"))
)


def prepare(job_id: uuid.UUID | str, token: int) -> Call | None:
    """The request for the job's current claim, or None if the claim is stale."""
    s = get_settings()
    jid = uuid.UUID(str(job_id))
    # It writes only the context cache, which the next call rebuilds if a crash loses it.
    with transaction(durable=False) as session:
        found = session.connection().execute(_PREPARE, {"job_id": jid}).first()
        if found is None or found.status != "active" or found.lease_token != token:
            return None
        cid = found.conversation_id
        if found.result is not None:  # (a JSON null reads as None too)
            return Call(jid, cid, token, "", ChatRequest(messages=[]), answered=True)
        request = chat_request(
            found.model_config or {}, build_messages(session, found, cid, s.context_messages)
        )
        agentq_logging.bind(agent=found.name, conversation_id=cid)
        cancellable = (found.settings or {}).get("double_texting") in ("interrupt", "rollback")
        return Call(jid, cid, token, found.provider, request, cancellable)


def run_job(job_id: uuid.UUID | str, token: int) -> None:
    """The LLM task: call the provider for the claimed job and complete it.

    Transient provider errors are retried inside the call (tenacity); what still fails
    costs the job an attempt (see `attempt_failed`).
    """
    call = prepare(job_id, token)
    if call is None:
        log.info("job %s claim %s is stale; nothing to do", job_id, token)
        return
    if call.answered:
        complete(call.job_id)
        return
    s = get_settings().llm

    def llm_call() -> ChatResult:
        return call_with_retries(
            get_provider(call.provider),
            call.request,
            max_retries=s.max_retries,
            backoff_base=s.backoff_base,
            backoff_max=s.backoff_max,
        )

    try:
        result = _cancellable(call.job_id, llm_call) if call.cancellable else llm_call()
        if result is None:
            log.info("job %s was cancelled during its LLM call", call.job_id)
            return
    except ProviderError as exc:
        attempt_failed(call.job_id, token, short_reason(exc), retryable=exc.retryable)
        return
    except Exception as exc:  # noqa: BLE001 - a bug or an odd provider costs one attempt
        log.exception("job %s: unexpected error in the LLM call", call.job_id)
        attempt_failed(call.job_id, token, short_reason(exc), retryable=True)
        return
    try:
        complete(call.job_id, result, token)
    except BaseException:
        # Keep the answer if we can, so a retry (or the reconciler) writes it without
        # calling the provider again.
        try:
            store_result(call.job_id, token, result)
        except Exception:  # noqa: BLE001 - the retry calls the provider again
            log.warning("job %s: answer not kept after a failed completion", call.job_id)
        raise


#: threads that carry LLM calls a newer message may cancel; the task thread watches
_calls = ThreadPoolExecutor(max_workers=256, thread_name_prefix="agentq-call")
#: how often a cancellable call looks for its cancel signal
CANCEL_POLL_SECONDS = 0.1


def _cancellable(job_id: uuid.UUID, fn: Callable[[], ChatResult]) -> ChatResult | None:
    """Run `fn` while watching for the job's cancel signal; None if it came first.

    A cancelled call is abandoned, not awaited: its connection is released when the
    provider answers or the request times out, and its answer is never stored.
    """
    future = _calls.submit(fn)
    while True:
        try:
            return future.result(timeout=CANCEL_POLL_SECONDS)
        except FutureTimeout:
            if ordering.is_cancelled(job_id):
                future.cancel()
                return None


def short_reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:REASON_MAX]


def clean_reply(content: str) -> tuple[str, bool]:
    """The reply as it can be stored: at most AGENTQ_MAX_REPLY_LENGTH characters, without
    NUL or lone surrogates (no database takes them). Returns (text, truncated)."""
    limit = get_settings().max_reply_length
    truncated = len(content) > limit
    text = content[:limit].replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    return text, truncated


def _answer(job_id: uuid.UUID, result: ChatResult) -> dict[str, Any]:
    """The provider's answer as a job keeps it (cut to AGENTQ_MAX_REPLY_LENGTH characters:
    a runaway provider must not fill the database)."""
    content, truncated = clean_reply(result.content)
    if truncated:
        log.warning(
            "job %s: reply of %d characters cut to %d", job_id, len(result.content), len(content)
        )
    return {
        "content": content,
        "truncated": truncated,
        "model": result.model,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_ms": int(result.latency * 1000),
        "requests": result.requests,
    }


def store_result(job_id: uuid.UUID, token: int, result: ChatResult) -> bool:
    """Keep the provider's answer on the job, if the claim is still current."""
    answer = _answer(job_id, result)
    with transaction() as session:
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "active", Job.lease_token == token)
            .values(result=answer)
        )
        return done.rowcount == 1


def _finish_statement(*, fenced: bool) -> Update:
    finish = update(J).where(J.c.id == bindparam("job_id"), J.c.status == "active")
    if fenced:  # only the current claim may finish the job
        finish = finish.where(J.c.lease_token == bindparam("token"))
    return finish.values(
        status="completed",
        result=bindparam("answer", type_=J.c.result.type),
        finished_at=bindparam("now"),
        lease_until=None,
        next_attempt_at=None,
    ).returning(
        J.c.conversation_id, J.c.agent_id, J.c.trigger_message_id, J.c.attempts, J.c.started_at
    )


# The statements of `complete`, built once: building a Core statement costs about as
# much CPU as executing it.
_FINISH = _finish_statement(fenced=True)
_FINISH_STORED = _finish_statement(fenced=False)
_STORED_ANSWER = (
    select(J.c.result)
    .where(J.c.id == bindparam("job_id"), J.c.status == "active")
    .with_for_update(key_share=True)
)
_P, _M = tables.participants, tables.messages
#: lock the reply's conversation, and read in the same round trip what completing needs:
#: the agent's participant (the reply's author), when the trigger was asked, whether a job
#: of the conversation waits, and whether others wait for the agent at its limit
_LOCK_FOR_REPLY = (
    select(
        _C.c.id,
        _C.c.kind,
        _C.c.settings,
        _C.c.last_seq,
        _C.c.handled_seq,
        _C.c.pending_since,
        select(_P.c.id)
        .where(_P.c.conversation_id == bindparam("conv_id"), _P.c.agent_id == bindparam("agent_id"))
        .scalar_subquery()
        .label("author_id"),
        select(_M.c.created_at)
        .where(_M.c.id == bindparam("trigger_id"))
        .scalar_subquery()
        .label("asked_at"),
        exists()
        .where(J.c.conversation_id == bindparam("conv_id"), J.c.status == "waiting")
        .label("waiting"),
        exists()
        .where(
            J.c.agent_id == bindparam("agent_id"),
            J.c.status == "waiting",
            J.c.conversation_id != bindparam("conv_id"),
        )
        .label("others_wait"),
        (
            select(A.c.status).where(A.c.id == bindparam("agent_id")).scalar_subquery() == "busy"
        ).label("agent_was_busy"),
    )
    .where(_C.c.id == bindparam("conv_id"))
    .with_for_update(key_share=True, of=_C)
)
_FREE_SLOT = (
    update(A)
    .where(A.c.id == bindparam("agent_id"))
    .values(
        total_responses=A.c.total_responses + 1,
        last_response_at=bindparam("now"),
        # At its limit (busy), it is free again unless its other jobs still fill it.
        status=case(
            (
                and_(
                    A.c.status == "busy",
                    select(func.count())
                    .where(J.c.agent_id == bindparam("agent_id"), J.c.status == "active")
                    .scalar_subquery()
                    < A.c.max_concurrent_jobs,
                ),
                "active",
            ),
            else_=A.c.status,
        ),
    )
    .returning(A.c.status, A.c.max_concurrent_jobs)
)
_INSERT_LLM_MESSAGE = insert(tables.llm_messages)
_INSERT_LINK = insert(tables.message_jobs)


def complete(
    job_id: uuid.UUID | str, result: ChatResult | None = None, token: int | None = None
) -> bool:
    """Write the job's reply and finish it. Idempotent: run twice, it writes once.

    With `result`, the provider's answer for the claim `token` is written, if that claim
    is still current; without, the answer stored on the job earlier. Returns whether this
    call did the writing.

    Every turn ends here, so it is Core and eight statements: finish the job, lock the
    conversation (reading what the rest needs), free the agent's slot, then the reply, its
    `llm_messages` and `message_jobs` rows and its events.
    """
    now = utcnow()
    jid = uuid.UUID(str(job_id))
    with transaction() as session:
        conn = session.connection()
        # The job first: the lock order everywhere is job, conversation, agent.
        answer: dict[str, Any] | None
        if result is not None:
            answer = _answer(jid, result)
            job = conn.execute(
                _FINISH, {"job_id": jid, "token": token, "answer": answer, "now": now}
            ).first()
        else:  # the answer stored by an earlier run, under the job's row lock
            answer = conn.execute(_STORED_ANSWER, {"job_id": jid}).scalar()
            job = (
                conn.execute(_FINISH_STORED, {"job_id": jid, "answer": answer, "now": now}).first()
                if answer
                else None
            )
        if job is None or answer is None:
            return False
        cid, aid = job.conversation_id, job.agent_id
        conv = conn.execute(
            _LOCK_FOR_REPLY, {"conv_id": cid, "agent_id": aid, "trigger_id": job.trigger_message_id}
        ).one()
        agent = conn.execute(_FREE_SLOT, {"agent_id": aid, "now": now}).one()
        # Other conversations may wait for the slot this job frees.
        wake = (
            ordering.waiting_for_agent(conn, aid, agent.max_concurrent_jobs, exclude=cid)
            if conv.agent_was_busy and conv.others_wait and agent.status == "active"
            else []
        )
        content = answer["content"]
        # Another agent may answer the reply (an autonomous channel): it opens a window.
        dispatch = autonomous(conv.kind, conv.settings)
        reply_id, seq = messages.insert_message(
            conn,
            conv,
            role="assistant",
            content=content,
            author_id=conv.author_id,
            reply_to_job_id=jid,
            needs_dispatch=dispatch,
            now=now,
        )
        conn.execute(
            _INSERT_LLM_MESSAGE,
            {
                "id": uuid.uuid4(),
                "message_id": reply_id,
                "role": "assistant",
                "content": content,
                "model": answer.get("model"),
                "prompt_tokens": answer.get("prompt_tokens", 0),
                "completion_tokens": answer.get("completion_tokens", 0),
                "latency_ms": answer.get("latency_ms", 0),
                "created_at": now,
            },
        )
        conn.execute(
            _INSERT_LINK,
            {
                "id": uuid.uuid4(),
                "message_id": reply_id,
                "job_id": jid,
                "agent_id": aid,
                "conversation_id": cid,
                "status": "reply",
                "created_at": now,
            },
        )
        duration = int((now - (job.started_at or now)).total_seconds() * 1000)
        rows = events.insert(
            conn,
            [
                events.MessageCreated(
                    conversation_id=cid,
                    message_id=reply_id,
                    seq=seq,
                    role="assistant",
                    author_id=conv.author_id,
                ),
                events.AgentResponded(
                    conversation_id=cid, agent_id=aid, job_id=jid, message_id=reply_id, seq=seq
                ),
                events.JobCompleted(
                    conversation_id=cid,
                    agent_id=aid,
                    job_id=jid,
                    attempts=job.attempts,
                    duration_ms=duration,
                ),
            ],
        )
        after = _After(
            cid,
            aid,
            jid,
            pending=dispatch or conv.pending_since is not None,
            waiting=bool(conv.waiting),
            wake=wake,
        )
    events.publish(rows)
    if conv.asked_at is not None:
        metrics.responded((now - conv.asked_at).total_seconds())
    log.info("job %s completed", job_id, extra={"conversation_id": str(cid)})
    after.run()
    return True


@dataclass
class _After:
    """What follows a job's end, once its transaction committed: free its agent slot,
    wake conversations waiting for that slot, dispatch what waited, start the
    conversation's next job. Steps the transaction saw no need for are skipped (a
    missed wake-up is covered by the limit poll, a missed start by the reconciler)."""

    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    job_id: uuid.UUID
    #: messages wait for dispatch (a reply another agent may answer)
    pending: bool = False
    #: a job of the conversation waits its turn
    waiting: bool = True
    #: conversations to advance now that the slot is free; None: look them up
    wake: list[uuid.UUID] | None = None

    def run(self) -> None:
        limits.release(self.agent_id, self.job_id)
        if self.wake is None:
            ordering.wake_agent(self.agent_id, exclude=self.conversation_id)
        for conv_id in self.wake or ():
            broker.send(broker.ADVANCE, conv_id)
        if self.pending:
            outcome = ordering.dispatch_due(self.conversation_id, start=True)
            if outcome.due is not None:
                debounce.arm(self.conversation_id, outcome.due)
            if outcome.jobs:
                return  # the next job started with them
        if self.waiting or self.pending:
            ordering.advance(self.conversation_id)


def _finish(session: Session, job: Job, status: str, now: datetime) -> None:
    job.status = status
    job.finished_at = now
    job.lease_until = None
    job.next_attempt_at = None


def _release_agent(session: Session, agent: Agent, job_id: uuid.UUID) -> None:
    """Back to `active` unless another of its jobs still runs (at its limit)."""
    if agent.status != "busy":
        return
    running = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.agent_id == agent.id, Job.status == "active", Job.id != job_id)
    )
    if not running or running < agent.max_concurrent_jobs:
        agent.status = "active"


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential with full jitter."""
    s = get_settings()
    cap = min(s.retry_backoff_max_seconds, s.retry_backoff_seconds * 2 ** (attempt - 1))
    return random.uniform(cap / 2, cap)


def attempt_failed(job_id: uuid.UUID, token: int, reason: str, *, retryable: bool) -> None:
    """Record a failed attempt: wait and try again (without holding a worker), or fail the
    job visibly when attempts are spent or the error cannot heal."""
    now = utcnow()
    with transaction() as session:
        job = session.get(Job, job_id, with_for_update=ROW_LOCK)
        if job is None or job.status != "active" or job.lease_token != token:
            return
        if retryable and job.attempts < job.max_attempts:
            wait = backoff(job.attempts)
            job.status = "delayed"
            job.next_attempt_at = now + timedelta(seconds=wait)
            job.lease_until = None
            job.failure_reason = reason
            rows = [
                events.record(
                    session,
                    events.JobRetrying(
                        conversation_id=job.conversation_id,
                        job_id=job.id,
                        agent_id=job.agent_id,
                        attempts=job.attempts,
                        reason=reason,
                        next_attempt_at=job.next_attempt_at,
                    ),
                )
            ]
            conv_id, retry_in = job.conversation_id, wait
        else:
            rows = fail(session, job, reason, now)
            conv_id, retry_in = job.conversation_id, None
        agent_id = job.agent_id
    events.publish(rows)
    if retry_in is not None:
        log.warning("job %s attempt failed, retrying in %.1fs: %s", job_id, retry_in, reason)
        limits.release(agent_id, job_id)  # no slot is held while it waits
        ordering.wake_agent(agent_id, exclude=conv_id)
        broker.send(broker.ADVANCE, conv_id, countdown=retry_in)
    else:
        log.warning("job %s failed: %s", job_id, reason)
        _After(conv_id, agent_id, job_id).run()


def fail(session: Session, job: Job, reason: str, now: datetime) -> list[events.EventRow]:
    """Fail `job` (locked by the caller): reason, a visible system message, events."""
    # Lock order everywhere: job, then conversation, then agent (no deadlocks).
    conv = load_conversation(session, job.conversation_id, lock=True)
    agent = session.get_one(Agent, job.agent_id, with_for_update=ROW_LOCK)
    _finish(session, job, "failed", now)
    job.failure_reason = reason
    _release_agent(session, agent, job.id)
    _, created = append_message(
        session,
        conv,
        role="system",
        content=f"{agent.name} could not respond: {reason}",
        author_id=None,
        needs_dispatch=False,
    )
    return [
        created,
        events.record(
            session,
            events.JobFailed(
                conversation_id=conv.id,
                job_id=job.id,
                agent_id=agent.id,
                attempts=job.attempts,
                reason=reason,
            ),
        ),
    ]


def retry_job(job_id: uuid.UUID | str) -> JobOut:
    """Give a failed (or cancelled) job a fresh set of attempts; it runs in its turn."""
    with transaction() as session:
        job = _load(session, job_id, lock=True)
        if job.status not in ("failed", "cancelled"):
            raise JobNotRetryable(job.id, job.status)
        job.status = "waiting"
        job.attempts = 0
        job.failure_reason = None
        job.finished_at = None
        job.result = None
        conv_id = job.conversation_id
    ordering.advance(conv_id)
    return get_job(job_id)


def _load(session: Session, job_id: uuid.UUID | str, *, lock: bool = False) -> Job:
    try:
        jid = uuid.UUID(str(job_id))
    except ValueError:
        raise JobNotFound(job_id) from None
    job = session.get(Job, jid, with_for_update=ROW_LOCK if lock else None)
    if job is None:
        raise JobNotFound(job_id)
    return job


def get_job(job_id: uuid.UUID | str) -> JobOut:
    with reader() as session:
        job = _load(session, job_id)
        seqs = session.scalars(
            select(Message.seq)
            .join(MessageJob, MessageJob.message_id == Message.id)
            .where(MessageJob.job_id == job.id, MessageJob.status == "trigger")
            .order_by(Message.seq)
        ).all()
        reply = session.scalar(select(Message).where(Message.reply_to_job_id == job.id))
        out = JobOut.model_validate(job)
        out.trigger_seqs = list(seqs)
        out.reply = MessageOut.model_validate(reply) if reply else None
        return out


def jobs_for_message(message_id: uuid.UUID | str) -> list[uuid.UUID]:
    with reader() as session:
        return list(
            session.scalars(
                select(MessageJob.job_id).where(
                    MessageJob.message_id == uuid.UUID(str(message_id)),
                    MessageJob.status == "trigger",
                )
            )
        )
