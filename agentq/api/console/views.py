"""What the console's pages show, computed from the store's rows and Redis: where each
conversation stands (and, when it waits, for which limit), a job's latency split, an
agent's slots and rate used, a provider's circuit.

The one module of the API that reads `agentq.store` directly (`agentq.store.console`,
read-only; see .importlinter): the operator console shows what no producer route does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agentq import profiles
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.runtime import breaker, limits
from agentq.runtime.redis import get_redis, key
from agentq.states import AgentStatus, JobStatus
from agentq.store import console as store
from agentq.store.console import (
    AgentRow,
    ConversationRow,
    JobRow,
    Timeline,
    TimelineJob,
)

__all__ = [
    "STATES",
    "AgentRow",
    "AgentView",
    "ConversationRow",
    "JobRow",
    "State",
    "Timeline",
    "TimelineJob",
    "agent_views",
    "latency",
    "state_of",
    "store",
]

log = logging.getLogger(__name__)

STATES = store.STATES


@dataclass(frozen=True)
class State:
    #: one of STATES
    name: str
    #: what it waits for, how long is left, why it failed
    detail: str
    #: when the debounce window ends (debouncing) or the next attempt starts (waiting)
    due_at: datetime | None = None


@dataclass(frozen=True)
class Segment:
    name: str
    seconds: float


@dataclass(frozen=True)
class AgentView:
    row: AgentRow
    slots_used: int | None
    rate_used: int | None
    circuit: str


class Facts:
    """Redis facts read once per page: slots, rate and tenant use, circuits."""

    def __init__(self) -> None:
        self._running: dict[uuid.UUID, int | None] = {}
        self._rate: dict[uuid.UUID, int | None] = {}
        self._tenant: dict[uuid.UUID, int | None] = {}
        self._circuits: dict[str, breaker.State] | None = None

    def running(self, agent_id: uuid.UUID) -> int | None:
        if agent_id not in self._running:
            self._running[agent_id] = _best_effort(limits.running, agent_id)
        return self._running[agent_id]

    def rate_used(self, agent_id: uuid.UUID) -> int | None:
        if agent_id not in self._rate:
            self._rate[agent_id] = _best_effort(_starts_in_period, agent_id)
        return self._rate[agent_id]

    def tenant_running(self, tenant_id: uuid.UUID) -> int | None:
        if tenant_id not in self._tenant:
            self._tenant[tenant_id] = _best_effort(limits.tenant_running, tenant_id)
        return self._tenant[tenant_id]

    def circuit(self, profile: str) -> breaker.State:
        if self._circuits is None:
            try:
                self._circuits = breaker.states(profiles.all())
            except Exception as exc:  # noqa: BLE001 - Redis away: the page still renders
                log.warning("circuit states not read: %s", type(exc).__name__)
                self._circuits = {}
        return self._circuits.get(profile, breaker.State(breaker.CLOSED))


def _best_effort(fn: Any, arg: Any) -> int | None:
    try:
        return int(fn(arg))
    except Exception as exc:  # noqa: BLE001 - Redis away: shown as unknown
        log.warning("console: %s not read: %s", fn.__name__, type(exc).__name__)
        return None


def _starts_in_period(agent_id: uuid.UUID) -> int:
    """The agent's starts within the rate limit's rolling period (acquire.lua's zset)."""
    r = get_redis()
    now_s, now_us = r.time()
    now_ms = now_s * 1000 + now_us // 1000
    period_ms = int(get_settings().rate_limit_period_seconds * 1000)
    return int(r.zcount(key("agent", agent_id, "starts"), now_ms - period_ms, "+inf"))


def profile_of(model_config: dict[str, Any]) -> str:
    name = model_config.get("profile", profiles.DEFAULT)
    return name if isinstance(name, str) else profiles.DEFAULT


def _secs(seconds: float) -> str:
    if seconds < 0:
        return "now"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _due(conv: ConversationRow) -> datetime | None:
    """When the conversation's debounce window ends: `debounce` after its latest pending
    message, never later than `max_wait` after its first (its own settings first)."""
    if conv.pending_since is None:
        return None
    s = get_settings()
    debounce = float(conv.settings.get("debounce_seconds", s.debounce_seconds))
    max_wait = float(conv.settings.get("max_wait_seconds", s.max_wait_seconds))
    latest = conv.last_message_at or conv.pending_since
    return min(
        latest + timedelta(seconds=debounce), conv.pending_since + timedelta(seconds=max_wait)
    )


def why_waiting(job: JobRow, facts: Facts, now: datetime) -> tuple[str, datetime | None]:
    """Which limit holds a waiting or delayed job."""
    profile = profile_of(job.agent_model_config)
    circuit = facts.circuit(profile)
    if job.status == JobStatus.DELAYED:
        if circuit.state != breaker.CLOSED:
            return (
                f"circuit {circuit.state.replace('_', '-')} ({profile}), retry in {_secs(circuit.retry_in)}",
                None,
            )
        if job.next_attempt_at is not None:
            left = (job.next_attempt_at - now).total_seconds()
            return (
                f"retry backoff: attempt {job.attempts}/{job.max_attempts} failed, "
                f"next in {_secs(left)}",
                job.next_attempt_at,
            )
        return "retry backoff", None
    if job.agent_status == AgentStatus.PAUSED:
        return f"agent {job.agent} paused", None
    if job.agent_status == AgentStatus.INACTIVE:
        return f"agent {job.agent} stopped", None
    used = facts.running(job.agent_id)
    if used is not None and used >= job.agent_max_concurrent:
        return f"concurrency: {job.agent} at {used}/{job.agent_max_concurrent} slots", None
    rate = facts.rate_used(job.agent_id)
    if rate is not None and rate >= job.agent_rate_per_minute:
        return f"rate limit: {job.agent} at {rate}/{job.agent_rate_per_minute} starts", None
    cap = limits.tenant_cap()
    if cap and job.tenant_id is not None:
        taken = facts.tenant_running(job.tenant_id)
        if taken is not None and taken >= cap:
            return f"tenant cap: {taken}/{cap} jobs running", None
    if circuit.state != breaker.CLOSED:
        return f"circuit {circuit.state.replace('_', '-')} ({profile})", None
    return f"queued for {job.agent}", None


def state_of(conv: ConversationRow, facts: Facts, now: datetime | None = None) -> State:
    """Where the conversation stands (STATES), and the detail the list shows."""
    now = now or utcnow()
    job = conv.job
    pending = conv.handled_seq < conv.last_seq
    if job is not None and job.status == JobStatus.ACTIVE:
        more = ", newer messages wait" if pending else ""
        return State(
            "running", f"{job.agent}, attempt {max(job.attempts, 1)}/{job.max_attempts}{more}"
        )
    if job is not None and job.status in (JobStatus.WAITING, JobStatus.DELAYED):
        detail, due = why_waiting(job, facts, now)
        return State("waiting", detail, due)
    if pending:
        due = _due(conv)
        left = "" if due is None else f"due in {_secs((due - now).total_seconds())}"
        return State("debouncing", left, due)
    if job is not None and job.status == JobStatus.FAILED:
        return State("failed", f"{job.agent}: {job.failure_reason or 'failed'}")
    return State("idle", "")


def latency(tj: TimelineJob) -> list[Segment]:
    """The job's latency split: debounce wait (first trigger to dispatch), queue wait
    (dispatch to first claim), LLM (the provider call that answered), completion (the
    rest until the reply was written: retries, backoff and the completion step)."""
    job = tj.job
    out: list[Segment] = []
    if tj.first_trigger_at is not None:
        out.append(
            Segment("debounce", max((job.created_at - tj.first_trigger_at).total_seconds(), 0))
        )
    if job.started_at is None:
        return out
    out.append(Segment("queue", max((job.started_at - job.created_at).total_seconds(), 0)))
    llm = (job.result or {}).get("latency_ms")
    end = tj.reply_at or job.finished_at
    if isinstance(llm, int | float):
        out.append(Segment("llm", llm / 1000))
    if end is not None:
        spent = (end - job.started_at).total_seconds() - (
            llm / 1000 if isinstance(llm, int | float) else 0
        )
        out.append(Segment("completion", max(spent, 0)))
    return out


def agent_views(rows: list[AgentRow]) -> list[AgentView]:
    facts = Facts()
    return [
        AgentView(
            row,
            facts.running(row.id),
            facts.rate_used(row.id),
            facts.circuit(profile_of(row.model_config)).state,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class ProviderView:
    name: str
    provider: str
    model: str
    circuit: str
    retry_in: float
    completed: int
    failed: int
    retried: int

    @property
    def error_rate(self) -> float | None:
        """Failed attempts over attempts, in the window (None: none)."""
        attempts = self.completed + self.failed + self.retried
        return None if not attempts else (self.failed + self.retried) / attempts


def providers(window: timedelta, tenant_id: uuid.UUID | None) -> list[ProviderView]:
    """Every model profile with its circuit, and the outcomes of the jobs of one tenant's
    agents (or of all) in the last `window`."""
    facts = Facts()
    outcomes = store.profile_outcomes(window, tenant_id)
    out = []
    for name, p in sorted(profiles.all().items()):
        c = facts.circuit(name)
        o = outcomes.get(name, store.ProfileOutcomes())
        out.append(
            ProviderView(
                name, p.provider, p.model, c.state, c.retry_in, o.completed, o.failed, o.retried
            )
        )
    return out
