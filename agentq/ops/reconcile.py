"""The reconciler: re-drive from the database anything unfinished.

Redis is a cache of intent (timers, queued tasks); the database is the truth. One pass
finds, and pushes on, whatever a lost Redis or a killed worker left behind:

- events not yet published (the outbox),
- conversations whose debounce window is over but were not dispatched,
- slots of running jobs that a Redis loss forgot,
- active jobs whose answer is stored but not written, or whose lease ran out (their
  worker died),
- agents with parked work (waiting jobs, retries due): their slots left taken by a crash
  are given back, and they wake as many parked conversations as they can take.

Each kind is read on its own, oldest first, page after page (`store.recovery`); what it
cannot help (the jobs of paused agents, however many) is left out, so lost work is always
found. Every step is idempotent, so passes may overlap and run on several hosts.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentq import turn
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.runtime import bus, limits
from agentq.store import conversations, recovery
from agentq.store.session import Tx, reader
from agentq.turn import debounce

log = logging.getLogger(__name__)

#: rows read per query; a pass reads pages until a kind is done or `MAX_PAGES` are read,
#: and the next pass goes on from its cursor
BATCH = 500
MAX_PAGES = 10


#: what a pass re-drove, by kind (`Report.as_dict`)
COUNTS = ("events_published", "dispatched", "advanced", "completed", "woken", "orphan_slots")


@dataclass
class Report:
    events_published: int = 0
    dispatched: int = 0
    advanced: int = 0
    completed: int = 0
    woken: int = 0
    orphan_slots: int = 0
    #: what the pass cost: its seconds, and the pages and rows each kind of trouble read
    seconds: float = 0.0
    pages: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """What the pass re-drove."""
        return {name: getattr(self, name) for name in COUNTS}

    def cost(self) -> dict[str, object]:
        """What the pass read and how long it took."""
        return {"seconds": round(self.seconds, 4), "pages": self.pages, "rows": self.rows}


#: where each kind's paging stopped in this process (None: from the start)
_cursors: dict[str, recovery.Cursor | None] = {}
#: one page of a kind of trouble: (transaction, cursor) -> rows with `key` and `id`
Page = Callable[[Tx, recovery.Cursor | None], list[Any]]


def _pages(kind: str, read: Page, report: Report) -> Iterator[Any]:
    """The rows of one kind of trouble, page after page, oldest first, from where the last
    pass stopped; at most MAX_PAGES pages a pass (the next pass goes on from there).
    Counts the pages and rows read into `report`."""
    after = _cursors.get(kind)
    for _ in range(MAX_PAGES):
        with reader() as tx:
            rows = read(tx, after)
        report.pages[kind] = report.pages.get(kind, 0) + 1
        report.rows[kind] = report.rows.get(kind, 0) + len(rows)
        yield from rows
        if len(rows) < BATCH:
            _cursors[kind] = None
            return
        after = (rows[-1].key, rows[-1].id)
        _cursors[kind] = after


def reconcile_once() -> Report:
    """One pass; returns what it re-drove, and what that cost (logged at DEBUG)."""
    started = time.monotonic()
    s = get_settings()
    now = utcnow()
    grace = now - timedelta(seconds=s.reconcile_grace_seconds)
    report = Report()
    report.events_published = bus.publish_unpublished(older_than=grace)

    def pages(kind: str, read: Page) -> Iterator[Any]:
        return _pages(kind, read, report)

    with reader() as tx:
        pending = conversations.pending_windows(tx, BATCH)
    report.pages["windows"], report.rows["windows"] = 1, len(pending)
    for window in pending:
        due = debounce.due_at(window)
        if due is not None and due < grace:
            _safely(turn.fire, window.id)
            report.dispatched += 1
    # Slots of running jobs, in case Redis lost them (limits must keep holding).
    by_agent: dict[uuid.UUID, list[uuid.UUID]] = {}
    for job in pages("running", lambda tx, after: recovery.running(tx, now, after, BATCH)):
        by_agent.setdefault(job.agent_id, []).append(job.id)
    for agent_id, job_ids in by_agent.items():
        added = limits.restore(agent_id, job_ids)
        if added:
            _forget_finished(agent_id, added)
    # Answers already stored are written first, so that no LLM call is made again.
    for job in pages("answered", lambda tx, after: recovery.answered(tx, grace, after, BATCH)):
        if _safely(turn.complete, job.id):
            report.completed += 1
    for job in pages("expired", lambda tx, after: recovery.expired(tx, now, after, BATCH)):
        if _safely(turn.advance, job.conversation_id):
            report.advanced += 1
    # Parked conversations are woken by their agent, as many as it can take: one look per
    # agent, however many wait (a wake-up lost with Redis, a slot a crash left taken).
    parked = lambda tx, after: recovery.parked_agents(tx, grace, after, BATCH)  # noqa: E731
    for agent in pages("parked", parked):
        report.orphan_slots += _free_orphans(agent.id, s.reconcile_grace_seconds)
        woken = _safely(turn.wake_agent, agent.id)
        report.woken += woken if isinstance(woken, int) else 0
    report.seconds = time.monotonic() - started
    if any(report.as_dict().values()):
        log.info("reconciled: %s", report.as_dict())
    log.debug("reconcile pass: %s", json.dumps(report.cost()))
    return report


def _free_orphans(agent_id: uuid.UUID, grace: float) -> int:
    """Give back the agent's slots held for jobs that do not run."""

    def statuses(job_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        with reader() as tx:
            return recovery.statuses(tx, job_ids)

    orphans = limits.orphans(agent_id, statuses, older_than=grace)
    for job_id in orphans:
        log.warning("agent %s: slot of job %s was left taken; given back", agent_id, job_id)
        limits.release(agent_id, job_id)
    return len(orphans)


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
