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

from agentq import turn
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.runtime import bus, limits
from agentq.store import conversations, recovery
from agentq.store.session import reader
from agentq.turn import debounce

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
    report.events_published = bus.publish_unpublished(older_than=now - grace)

    with reader() as tx:
        pending = conversations.pending_windows(tx, BATCH)
        stalled = recovery.stalled_conversations(tx, now, now - grace, BATCH)
        running = recovery.running(tx, now)
        answered = recovery.answered(tx, now - grace, BATCH)

    for window in pending:
        due = debounce.due_at(window)
        if due is not None and due + grace < now:
            _safely(turn.fire, window.id)
            report.dispatched += 1
    # Slots of running jobs, in case Redis lost them (limits must keep holding).
    by_agent: dict[uuid.UUID, list[uuid.UUID]] = {}
    for job in running:
        by_agent.setdefault(job.agent_id, []).append(job.id)
    for agent_id, job_ids in by_agent.items():
        added = limits.restore(agent_id, job_ids)
        if added:
            _forget_finished(agent_id, added)
    # Answers already stored are written first, so that no LLM call is made again.
    for job_id in answered:
        if _safely(turn.complete, job_id):
            report.completed += 1
    for conv_id in stalled:
        if _safely(turn.advance, conv_id):
            report.advanced += 1
    if any(report.as_dict().values()):
        log.info("reconciled: %s", report.as_dict())
    return report


def _forget_finished(agent_id: uuid.UUID, job_ids: list[uuid.UUID]) -> None:
    """Give back the slots just restored for jobs that finished since we looked.

    A job that finishes after this read releases its slot itself, after our restore, so
    between the two no finished job keeps a slot.
    """
    with reader() as tx:
        still = recovery.still_active(tx, job_ids)
    for job_id in job_ids:
        if job_id not in still:
            limits.release(agent_id, job_id)


def _safely(fn: Callable[[uuid.UUID], object], ident: uuid.UUID) -> object:
    try:
        return fn(ident)
    except Exception:  # noqa: BLE001 - one bad conversation must not stop the pass
        log.exception("reconcile: %s could not be re-driven", ident)
        return None
