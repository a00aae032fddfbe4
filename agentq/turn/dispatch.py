"""Dispatch: turn a conversation's due pending messages into jobs, one a responder, with
their `message_jobs` links, and mark the messages handled.

Safety under at-least-once delivery rests on the database: dispatch locks the
conversation row, so two workers (or a task and its redelivered twin) take turns, and a
second run finds nothing pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from agentq import events
from agentq.clock import utcnow
from agentq.config import Settings, get_settings
from agentq.errors import ConversationNotFound
from agentq.runtime import metrics
from agentq.states import (
    CANCELLING,
    ConversationSettings,
    DoubleTexting,
    JobStatus,
    Role,
)
from agentq.store import agents, conversations, jobs, messages, outbox
from agentq.store.session import Tx
from agentq.turn import debounce
from agentq.turn.outcome import Effects
from agentq.turn.responders import ConversationView, MessageView, get_selector


class JobRef(Protocol):
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def agent_id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def lease_token(self) -> int: ...


def loop_bound(hops: int, turns: int, hop_limit: int, budget: int) -> str | None:
    """Why agents must stop answering each other, or None while within bounds: `hops`
    agent turns since the last human message against `hop_limit`, `turns` agent turns in
    all against the conversation's `budget` (0: none)."""
    if hops >= hop_limit:
        return f"agents stopped after {hops} turns without a human message (hop limit {hop_limit})"
    if budget and turns >= budget:
        return f"agents stopped: the conversation's turn budget of {budget} is spent"
    return None


def dispatch(tx: Tx, conv_id: uuid.UUID) -> Effects:
    """If the conversation's pending messages are due, turn them into jobs.

    While a job of the conversation is unfinished, its `double_texting` setting decides:
    `enqueue` (a new job waits its turn), `reject` (no job; an info status says so),
    `interrupt` (cancel the unfinished jobs; one new job covers their messages and the new
    ones) or `rollback` (as interrupt, and the cancelled jobs keep no links). A window not
    over yet sets `due`: the timer must fire again then.
    """
    out = Effects(conv_id)
    conv = conversations.lock_for_dispatch(tx, conv_id)
    if conv is None:
        raise ConversationNotFound(conv_id)
    if conv.last_seq <= conv.handled_seq:
        if conv.pending_since is not None:
            conversations.mark_handled(tx, conv_id, conv.handled_seq)
        return out
    due = debounce.due_at(conv)
    if due is not None and due > utcnow():
        out.due = due
        return out
    batch, members = messages.take(tx, conv_id, conv.handled_seq, conv.last_seq, utcnow())
    out.handled = len(batch)
    live = [m for m in batch if m.deleted_at is None and m.role != Role.SYSTEM]
    if live:
        # read after the lock (never with it: on PostgreSQL a read in the locking statement
        # sees the snapshot from before its wait), so an agent that joined meanwhile answers
        if members is None:
            members = conversations.agents(tx, conv_id)
        _plan_jobs(tx, conv, members, live, batch[0].unfinished, out, get_settings())
    metrics.debounced(len(live))
    return out


def _plan_jobs(
    tx: Tx,
    conv: ConversationView,
    members: Sequence[conversations.Member],
    live: Sequence[MessageView],
    unfinished_before: bool,
    out: Effects,
    s: Settings,
) -> None:
    """Make the batch's jobs (one a responder among `members`); `unfinished_before`:
    whether a job of the conversation was unfinished before."""
    settings = ConversationSettings.of(conv.settings)
    human = any(m.role == Role.USER for m in live)
    notices: list[events.Event] = []
    if not human:
        hop_limit = s.hop_limit if settings.hop_limit is None else settings.hop_limit
        budget = s.turn_budget if settings.turn_budget is None else settings.turn_budget
        stop = loop_bound(
            conversations.agent_turns_since_human(tx, conv.id),
            conversations.agent_turns(tx, conv.id) if budget else 0,
            hop_limit,
            budget,
        )
        if stop:
            notices.append(
                events.Status(
                    conversation_id=conv.id,
                    category="info",
                    message=stop,
                    data={"reason": "loop_bound"},
                )
            )
            out.events += outbox.insert_events(tx, notices)
            return
    policy = settings.double_texting
    unfinished = jobs.unfinished(tx, conv.id) if human and policy != DoubleTexting.ENQUEUE else []
    if unfinished and policy == DoubleTexting.REJECT:
        notice = events.Status(
            conversation_id=conv.id,
            category="info",
            message=f"{len(live)} message(s) not answered: an answer is still in progress "
            "(double-texting: reject)",
            data={"reason": "double_texting_reject", "seqs": [m.seq for m in live]},
        )
        out.events += outbox.insert_events(tx, [notice])
        return
    if unfinished and policy in CANCELLING:
        live = _interrupt(tx, unfinished, live, policy, out)
        members = conversations.agents(tx, conv.id)  # read again: their slots were freed
    own = {a.id: a for a in members}
    now = utcnow()
    made: list[jobs.Next] = []
    for agent in get_selector(s.responder_selector)(conv, members, live):
        member = own.get(agent.id)
        own_id = member.participant_id if member is not None else None
        triggers = [m.id for m in live if m.author_id != own_id]
        if triggers:
            job_id = jobs.create(tx, conv.id, agent.id, triggers, s.max_attempts, now)
            out.jobs.append(job_id)
            if member is not None:
                made.append(_waiting(job_id, member, s.max_attempts, now))
    if made and len(made) == len(out.jobs) and not unfinished_before:
        # No job of the conversation was unfinished before these: the first of them in the
        # order `jobs.next_job` reads (made together: by id) is its next job, and a claim
        # need not read it back.
        out.next_job = min(made, key=lambda j: j.id)


def _waiting(job_id: uuid.UUID, agent: Any, max_attempts: int, now: datetime) -> jobs.Next:
    """A job just made for `agent` (a row of `conversations.agents`), as `jobs.next_job`
    would read it."""
    return jobs.Next(
        id=job_id,
        status=JobStatus.WAITING,
        agent_id=agent.id,
        attempts=0,
        max_attempts=max_attempts,
        lease_until=None,
        next_attempt_at=None,
        created_at=now,
        agent_status=agent.status,
        agent_name=agent.name,
        max_concurrent_jobs=agent.max_concurrent_jobs,
        rate_limit_per_minute=agent.rate_limit_per_minute,
        tenant_id=agent.tenant_id,
    )


def _interrupt(
    tx: Tx,
    unfinished: Sequence[JobRef],
    live: Sequence[MessageView],
    policy: DoubleTexting,
    out: Effects,
) -> list[MessageView]:
    """Cancel the unfinished jobs; the messages they answered join the new batch."""
    carried: dict[uuid.UUID, MessageView] = {}
    now = utcnow()
    freed: set[uuid.UUID] = set()
    for job in unfinished:
        job_id, agent_id = job.id, job.agent_id
        for m in jobs.triggers(tx, job_id):
            carried[m.id] = m
        jobs.end(tx, job_id, JobStatus.CANCELLED, f"interrupted by a newer message ({policy})", now)
        if policy == DoubleTexting.ROLLBACK:
            jobs.drop_links(tx, job_id)
        freed.add(agent_id)
        if job.status == JobStatus.ACTIVE:  # a worker may run its call: stop it
            out.cancelled.append((job_id, job.lease_token))
    for agent_id in freed:  # their slots are given back after commit
        agents.free_slot(tx, agent_id)
    return sorted({**carried, **{m.id: m for m in live}}.values(), key=lambda m: m.seq)
