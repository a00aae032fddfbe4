"""What a step of a turn decided, for `agentq.turn.effects` to carry out once its
transaction has committed. Steps fill these in; they never act on Redis or Celery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from agentq.store.jobs import Next
from agentq.store.outbox import Recorded


@dataclass(frozen=True)
class Claim:
    """A job claimed for an attempt: its LLM call carries `token`, the fencing token."""

    job_id: uuid.UUID
    conversation_id: uuid.UUID
    token: int
    attempt: int


class Then(StrEnum):
    """The step to run at once, after this one's effects."""

    #: start the conversation's next job if none runs
    ADVANCE = "advance"
    #: dispatch the conversation's due messages and start its next job
    DISPATCH = "dispatch"


@dataclass
class Effects:
    """What happens after a step's commit (see `effects.run` for the order)."""

    conversation_id: uuid.UUID | None = None
    #: events stored by the step: publish them
    events: list[Recorded] = field(default_factory=list)
    #: claims (job, token) cancelled while they may run: signal their workers, which give
    #: the agent slot back once the call has ended
    cancelled: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    #: agent slots (agent, job) to give back: the job no longer runs
    release: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    #: the agent slot (agent, job) taken inside the transaction: given back if it fails
    taken: tuple[uuid.UUID, uuid.UUID] | None = None
    #: the agent the claim filled: marked busy last in the transaction (`schedule.
    #: mark_busy`), after every conversation and job it locks (the lock order)
    busy: uuid.UUID | None = None
    #: a job claimed: send it to the LLM pool
    claim: Claim | None = None
    #: the conversation's debounce window ends then: arm its timer
    due: datetime | None = None
    #: conversations to advance now (a slot freed for them)
    wake: list[uuid.UUID] = field(default_factory=list)
    #: an agent with a freed slot or back at work: advance what waits for it
    wake_agent: uuid.UUID | None = None
    #: the conversation parked at this agent's limits: (agent, seconds until the agent
    #: looks at its parked conversations again, unless a freed slot wakes them first)
    check_agent: tuple[uuid.UUID, float] | None = None
    #: advance the conversation again in this many seconds (a retry delay)
    advance_in: float | None = None
    #: a job that cannot start, and why: fail it visibly
    fail: tuple[uuid.UUID, str] | None = None
    #: the step to run now
    then: Then | None = None
    #: jobs made by a dispatch
    jobs: list[uuid.UUID] = field(default_factory=list)
    #: the conversation's next job when a dispatch just made it (none was unfinished):
    #: `schedule.start_next` claims it without reading it back (in the same transaction)
    next_job: Next | None = None
    #: messages a dispatch consumed (covered by jobs, or needing none)
    handled: int = 0
    #: a reply was written this many seconds after its trigger (the response-time metric)
    responded_after: float | None = None
