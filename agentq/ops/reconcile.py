"""The reconciler: re-drive from the database anything unfinished.

Redis is a cache of intent (timers, queued tasks); the database is the truth. One pass
finds, and pushes on, whatever a lost Redis or a killed worker left behind:

- events not yet published (the outbox),
- conversations whose debounce window is over but were not dispatched,
- conversations with a waiting job and none running,
- active jobs whose lease ran out (their worker died) or whose answer is stored but not
  written, and delayed jobs whose retry time is past.

Every step is idempotent, so passes may overlap and run on several hosts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select

from agentq import events
from agentq.config import get_settings
from agentq.runtime import limits
from agentq.store.models import Conversation, Job, utcnow
from agentq.store.session import reader
from agentq.turn import debounce
from agentq.turn import dispatch as ordering
from agentq.turn import finish as jobs

log = logging.getLogger(__name__)

#: conversations looked at per kind of trouble in one pass; the next pass takes the rest
BATCH = 500


@dataclass
class Report:
    events_published: int = 0
    dispatched: int = 0
    advanced: int = 0
    completed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def reconcile_once() -> Report:
    """One pass; returns what it re-drove."""
    s = get_settings()
    now = utcnow()
    grace = timedelta(seconds=s.reconcile_grace_seconds)
    report = Report()
    report.events_published = events.publish_unpublished(older_than=now - grace)

    with reader() as session:
        pending = session.execute(
            select(
                Conversation.id,
                Conversation.pending_since,
                Conversation.last_message_at,
                Conversation.settings,
            )
            .where(Conversation.pending_since.is_not(None))
            .order_by(Conversation.pending_since)
            .limit(BATCH)
        ).all()
        stalled = session.scalars(
            select(Job.conversation_id)
            .where(
                or_(
                    and_(Job.status == "waiting", Job.created_at < now - grace),
                    and_(Job.status == "active", Job.lease_until < now),
                    and_(Job.status == "delayed", Job.next_attempt_at < now - grace),
                )
            )
            .distinct()
            .limit(BATCH)
        ).all()
        running = session.execute(
            select(Job.agent_id, Job.id).where(Job.status == "active", Job.lease_until >= now)
        ).all()
        answered = session.scalars(
            select(Job.id)
            .where(Job.status == "active", Job.result.is_not(None), Job.updated_at < now - grace)
            .limit(BATCH)
        ).all()

    for conv_id, since, last, settings in pending:
        probe = Conversation(pending_since=since, last_message_at=last, settings=settings)
        due = debounce.due_at(probe)
        if due is not None and due + grace < now:
            _safely(ordering.fire, conv_id)
            report.dispatched += 1
    # Slots of running jobs, in case Redis lost them (limits must keep holding).
    by_agent: dict[uuid.UUID, list[uuid.UUID]] = {}
    for agent_id, job_id in running:
        by_agent.setdefault(agent_id, []).append(job_id)
    for agent_id, job_ids in by_agent.items():
        added = limits.restore(agent_id, job_ids)
        if added:
            _forget_finished(agent_id, added)
    # Answers already stored are written first, so that no LLM call is made again.
    for job_id in answered:
        if _safely(jobs.complete, job_id):
            report.completed += 1
    for conv_id in stalled:
        if _safely(ordering.advance, conv_id):
            report.advanced += 1
    if any(report.as_dict().values()):
        log.info("reconciled: %s", report.as_dict())
    return report


def _forget_finished(agent_id: uuid.UUID, job_ids: list[uuid.UUID]) -> None:
    """Give back the slots just restored for jobs that finished since we looked.

    A job that finishes after this read releases its slot itself, after our restore, so
    between the two no finished job keeps a slot.
    """
    with reader() as session:
        still = set(
            session.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.status == "active"))
        )
    for job_id in job_ids:
        if job_id not in still:
            limits.release(agent_id, job_id)


def _safely(fn: Callable[[uuid.UUID], object], ident: uuid.UUID) -> object:
    try:
        return fn(ident)
    except Exception:  # noqa: BLE001 - one bad conversation must not stop the pass
        log.exception("reconcile: %s could not be re-driven", ident)
        return None
