"""agentq's vocabulary: the states and policies stored in the database and set by callers.

Each is a `StrEnum`, so a member compares equal to, and is stored as, its plain string:
rows written before these enums existed read back as members.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    """Where a job is in its life (`jobs.status`)."""

    #: made by dispatch; waits for its conversation's turn and its agent's limits
    WAITING = "waiting"
    #: claimed by a worker, under a lease (`lease_until`) and a fencing token
    ACTIVE = "active"
    #: an attempt failed; the next starts at `next_attempt_at`, with no worker held
    DELAYED = "delayed"
    #: its reply is written
    COMPLETED = "completed"
    #: attempts spent or an error that cannot heal; a system message says why
    FAILED = "failed"
    #: interrupted by a newer message (double texting `interrupt` or `rollback`)
    CANCELLED = "cancelled"


#: job states that hold a conversation's one slot: nothing else of it may run meanwhile
OPEN_JOB_STATES = (JobStatus.ACTIVE, JobStatus.DELAYED)
#: job states not finished yet: waiting its turn or holding the slot
UNFINISHED_JOB_STATES = (JobStatus.WAITING, *OPEN_JOB_STATES)
#: job states from which nothing more happens unless an operator retries
FINISHED_JOB_STATES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
#: finished job states an operator may retry
RETRYABLE_JOB_STATES = (JobStatus.FAILED, JobStatus.CANCELLED)


class AgentStatus(StrEnum):
    """Whether an agent takes jobs (`agents.status`)."""

    #: takes jobs, below its `max_concurrent_jobs`
    ACTIVE = "active"
    #: at its `max_concurrent_jobs`: new jobs wait for a slot
    BUSY = "busy"
    #: an operator paused it: its jobs wait, and run in order on resume
    PAUSED = "paused"
    #: stopped: no new jobs; waiting ones fail visibly
    INACTIVE = "inactive"


#: agent states in which waiting jobs are held, not started
HOLDING_AGENT_STATES = (AgentStatus.PAUSED, AgentStatus.INACTIVE)


class ConversationKind(StrEnum):
    #: one agent answers every message
    DM = "dm"
    #: several agents; @mentions first, else the responder policy
    CHANNEL = "channel"


class ParticipantKind(StrEnum):
    USER = "user"
    #: agents are participants of their own kind, never disguised as users
    AGENT = "agent"


class Role(StrEnum):
    """A message's role, as an LLM sees it."""

    USER = "user"
    ASSISTANT = "assistant"
    #: agentq's own notices ("<agent> could not respond: ..."); never answered
    SYSTEM = "system"


class LinkStatus(StrEnum):
    """What a `message_jobs` row says of its message."""

    #: the job answers this message
    TRIGGER = "trigger"
    #: this message is the job's reply
    REPLY = "reply"


class DoubleTexting(StrEnum):
    """What a message that arrives while the conversation's job is unfinished does."""

    #: a new job waits its turn (the default)
    ENQUEUE = "enqueue"
    #: no job; an info status says the message was not answered
    REJECT = "reject"
    #: cancel the unfinished jobs; one new job covers their messages and the new ones
    INTERRUPT = "interrupt"
    #: as interrupt, and the cancelled jobs keep no links
    ROLLBACK = "rollback"


#: policies that cancel a running job: its LLM call watches for the cancel signal
CANCELLING = (DoubleTexting.INTERRUPT, DoubleTexting.ROLLBACK)


class Responders(StrEnum):
    """Who answers in a channel when no agent is @mentioned."""

    #: the most relevant agent
    ONE = "one"
    #: every agent of the channel
    ALL = "all"


#: the longest debounce window a conversation may ask for, in seconds (a debounce timer is a
#: Celery countdown: it must stay far inside the broker's visibility timeout)
MAX_WINDOW_SECONDS = 600.0


class ConversationSettings(BaseModel):
    """A conversation's own settings (`conversations.settings`); unset fields fall back to
    the deployment's (`agentq.config.Settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    debounce_seconds: float | None = Field(default=None, ge=0, le=MAX_WINDOW_SECONDS)
    max_wait_seconds: float | None = Field(default=None, ge=0, le=MAX_WINDOW_SECONDS)
    double_texting: DoubleTexting = DoubleTexting.ENQUEUE
    hop_limit: int | None = Field(default=None, ge=0)
    turn_budget: int | None = Field(default=None, ge=0)
    autonomous: bool = False
    responders: Responders | None = None

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> ConversationSettings:
        """The settings as stored (already checked when they were written)."""
        return cls.model_validate(stored or {})
