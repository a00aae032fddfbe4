"""Prometheus metrics, all named `agentq_*`.

Two kinds:

- **Process metrics** (counters and histograms) are updated where things happen: job
  outcomes and durations from the `job.*` events (`agentq.events.on` handlers, so every
  process that commits an event counts it), LLM request latency and errors in
  `providers.retry`, queue wait at claim time in `coordination.ordering`, debounce
  batches in `ordering.dispatch_due`. Each process exposes its own; Prometheus sums them.
- **State gauges** (jobs by status, queue depth, active jobs per agent, active
  conversations, queued jobs, responses per agent, messages in the last minute) are read
  from the database and Redis at scrape time by `StateCollector`. Only the API registers
  it (`state_registry()`), so N workers do not run N copies of the same queries and the
  series are not multiplied. Per-agent series are labelled by agent id, never by name.

API exposure: on `AGENTQ_API_METRICS_PORT` (`serve(port, state=True)`), or on the API
port's `/metrics` for `AGENTQ_METRICS_TOKEN` only; tenants never read them.

Worker exposure: each worker process serves its registry on its own HTTP port
(`AGENTQ_METRICS_PORT`, off when unset), started from Celery's `worker_init` signal
(`connect_worker_signals`). The threads and gevent pools agentq recommends run every
task in that one process, so its registry sees everything. For a prefork pool set
`PROMETHEUS_MULTIPROC_DIR` (an empty directory) as well: the children then write to
files there and the port serves the aggregate (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agentq import events, profiles
from agentq.clock import utcnow
from agentq.providers import retry as provider_retry
from agentq.runtime import backpressure, breaker
from agentq.states import AgentStatus, JobStatus
from agentq.store import feed, stats, tenants

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

#: env var naming the port a worker serves /metrics on; unset or 0: no server
PORT_ENV = "AGENTQ_METRICS_PORT"
#: the port compose and Kubernetes give workers (Prometheus exporters' range)
DEFAULT_WORKER_PORT = 9808
#: a conversation with a message this recent counts as active
ACTIVE_CONVERSATION_SECONDS = 300.0

#: job and LLM calls take seconds; queue waits range from milliseconds to minutes
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
LLM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60)

JOBS_FINISHED = Counter(
    "agentq_jobs_finished_total", "Jobs that reached a final state, by status.", ["status"]
)
JOB_RETRIES = Counter(
    "agentq_job_retries_total", "Job attempts that failed and were scheduled again."
)
JOB_DURATION = Histogram(
    "agentq_job_duration_seconds",
    "From a job's first claim to its completion (retries included).",
    buckets=DURATION_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "agentq_job_queue_wait_seconds",
    "From a job's creation to its first claim.",
    buckets=DURATION_BUCKETS,
)
RESPONSE_TIME = Histogram(
    "agentq_response_time_seconds",
    "From the first message a reply answers to the reply (debounce included): what a user waits.",
    buckets=DURATION_BUCKETS,
)
RESPONSES = Counter("agentq_responses_total", "Agent replies written.")
MESSAGES = Counter("agentq_messages_total", "Messages created, by role.", ["role"])
EVENTS = Counter(
    "agentq_events_published_total", "Events published after commit, by type.", ["type"]
)
# Live status counters (emitted, dropped, batches) live beside their buffer, in
# agentq.status: agentq_status_events_total, agentq_status_dropped_total.
LLM_REQUESTS = Counter(
    "agentq_llm_requests_total",
    "LLM HTTP requests by provider and status (an HTTP code, ok, timeout or error).",
    ["provider", "status"],
)
LLM_ERRORS = Counter(
    "agentq_llm_errors_total",
    "Failed LLM requests by provider and status.",
    ["provider", "status"],
)
LLM_LATENCY = Histogram(
    "agentq_llm_request_duration_seconds",
    "Latency of one LLM request, by provider.",
    ["provider"],
    buckets=LLM_BUCKETS,
)
LLM_RETRIES = Counter(
    "agentq_llm_retries_total", "LLM requests retried after a transient error.", ["provider"]
)
DEBOUNCE_BATCHES = Counter(
    "agentq_debounce_batches_total", "Dispatches that turned pending messages into jobs."
)
CIRCUIT_TRANSITIONS = Counter(
    "agentq_circuit_transitions_total",
    "Circuit breaker changes of state, by model profile and the state entered (open, "
    "half_open, closed).",
    ["profile", "state"],
)
DEBOUNCE_COALESCED = Counter(
    "agentq_debounce_coalesced_messages_total",
    "Messages folded into a batch with an earlier one (a burst answered once).",
)


# -- hooks called from the core (one line each there; never raise) --------------------


@contextmanager
def llm_request(provider: str) -> Iterator[None]:
    """Time one provider request and count it by outcome."""
    start = time.monotonic()
    status = "ok"
    try:
        yield
    except BaseException as exc:
        status = _status_of(exc)
        LLM_ERRORS.labels(provider, status).inc()
        raise
    finally:
        LLM_REQUESTS.labels(provider, status).inc()
        LLM_LATENCY.labels(provider).observe(time.monotonic() - start)


def _status_of(exc: BaseException) -> str:
    code = getattr(exc, "status_code", None)
    if code:
        return str(code)
    text = f"{type(exc).__name__} {exc}".lower()
    return "timeout" if "timeout" in text or "timed out" in text else "error"


def llm_retry(provider: str) -> None:
    LLM_RETRIES.labels(provider).inc()


# Providers know nothing of metrics: they report through this hook.
provider_retry.observe(llm_request, llm_retry)


def circuit_transition(profile: str, state: str) -> None:
    CIRCUIT_TRANSITIONS.labels(profile, state).inc()


breaker.observe(circuit_transition)


def queue_waited(waited: timedelta) -> None:
    """How long a job waited for its first claim (later attempts waited on backoff, not
    a queue)."""
    QUEUE_WAIT.observe(max(0.0, waited.total_seconds()))


def responded(seconds: float) -> None:
    """A reply was written `seconds` after the message that asked for it."""
    RESPONSE_TIME.observe(max(0.0, seconds))


def debounced(messages: int) -> None:
    """A dispatch consumed `messages` live messages (a burst of n coalesces n - 1)."""
    if messages > 0:
        DEBOUNCE_BATCHES.inc()
        DEBOUNCE_COALESCED.inc(messages - 1)


# -- event handlers: run after commit in the process that committed -------------------


@events.on("*")
def _count_event(rec: dict[str, Any]) -> None:
    kind = rec["type"]
    EVENTS.labels(kind).inc()
    payload = rec.get("payload") or {}
    if kind == "message.created":
        MESSAGES.labels(payload.get("role", "user")).inc()
    elif kind == "job.completed":
        JOBS_FINISHED.labels("completed").inc()
        JOB_DURATION.observe(max(0.0, payload.get("duration_ms", 0) / 1000))
    elif kind == "job.failed":
        JOBS_FINISHED.labels("failed").inc()
    elif kind == "job.retrying":
        JOB_RETRIES.inc()
    elif kind == "agent.responded":
        RESPONSES.inc()


# -- state read at scrape time ------------------------------------------------------


def queue_depths() -> dict[str, int]:
    """Messages ready in each Celery queue (the Redis lists KEDA scales on).

    kombu's Redis transport keeps priorities 0-9 in up to four lists a queue:
    the queue name, then `<name>\\x06\\x163`, `\\x066`, `\\x069`.
    """
    from agentq.runtime.broker import QUEUES, get_app

    with get_app().connection_for_read() as conn:
        client = conn.default_channel.client
        out = {}
        for q in QUEUES:
            names = [q] + [f"{q}\x06\x16{p}" for p in (3, 6, 9)]
            pipe = client.pipeline()
            for name in names:
                pipe.llen(name)
            out[q] = int(sum(pipe.execute()))
        return out


class StateCollector(Collector):
    """Gauges computed from PostgreSQL/SQLite and Redis when Prometheus scrapes."""

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("agentq_state_up", "1 if the last state scrape succeeded.")
        try:
            now = datetime.now().astimezone()
            state = stats.queue_state(
                active_since=now - timedelta(seconds=ACTIVE_CONVERSATION_SECONDS),
                messages_since=now - timedelta(seconds=60),
            )
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even with the DB down
            log.warning("metrics: database state unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return

        jobs = GaugeMetricFamily(
            "agentq_jobs", "Jobs in the database, by status.", labels=["status"]
        )
        by_status = state.jobs_by_status
        for job_status in JobStatus:
            jobs.add_metric([job_status], by_status.get(job_status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "agentq_queued_jobs",
            "Jobs waiting for their turn or for a retry.",
            value=by_status.get(JobStatus.WAITING, 0) + by_status.get(JobStatus.DELAYED, 0),
        )
        yield GaugeMetricFamily(
            "agentq_active_conversations",
            f"Conversations with a message in the last {int(ACTIVE_CONVERSATION_SECONDS)}s.",
            value=state.active_conversations,
        )
        yield GaugeMetricFamily(
            "agentq_messages_last_minute",
            "Messages created in the last 60 seconds.",
            value=state.recent_messages,
        )
        # Per agent by id: names are a tenant's own words, and unique only per tenant.
        per_agent = GaugeMetricFamily(
            "agentq_agent_active_jobs", "Jobs running now, by agent id.", labels=["agent"]
        )
        responses = CounterMetricFamily(
            "agentq_agent_responses",
            "Replies written, by agent id (from the database).",
            labels=["agent"],
        )
        by_agent_status = GaugeMetricFamily("agentq_agents", "Agents by status.", labels=["status"])
        counts: dict[str, int] = {}
        for agent in state.agents:
            per_agent.add_metric([str(agent.id)], state.active_jobs_by_agent.get(agent.id, 0))
            responses.add_metric([str(agent.id)], agent.total_responses)
            counts[agent.status] = counts.get(agent.status, 0) + 1
        for agent_status in AgentStatus:
            by_agent_status.add_metric([agent_status], counts.get(agent_status, 0))
        yield per_agent
        yield responses
        yield by_agent_status
        yield from _tenant_gauges()
        yield from _oldest_waiting_gauge()

        depth = GaugeMetricFamily(
            "agentq_queue_depth", "Tasks ready in each Celery queue.", labels=["queue"]
        )
        try:
            for q, n in queue_depths().items():
                depth.add_metric([q], n)
            yield depth
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: queue depth unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up


def _or_nothing(what: str) -> Callable[[Callable[P, Iterator[T]]], Callable[P, Iterator[T]]]:
    """A gauge reader that yields nothing (and logs why) when its source is away: the
    other gauges of the scrape still answer."""

    def wrap(read: Callable[P, Iterator[T]]) -> Callable[P, Iterator[T]]:
        @functools.wraps(read)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            try:
                yield from read(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                log.warning("metrics: %s unavailable: %s", what, type(exc).__name__)

        return guarded

    return wrap


@_or_nothing("tenant pending counts")
def _tenant_gauges() -> Iterator[GaugeMetricFamily]:
    """Pending messages and their limit per tenant (backpressure), labelled by tenant id:
    ids never change, and no text of a tenant's choosing becomes a label."""
    rows = tenants.pending_by_tenant()
    pending = GaugeMetricFamily(
        "agentq_tenant_pending_messages",
        "Messages a tenant posted and has not had answered yet, by tenant id.",
        labels=["tenant"],
    )
    limits = GaugeMetricFamily(
        "agentq_tenant_pending_limit",
        "A tenant's limit on pending messages (0: none), by tenant id.",
        labels=["tenant"],
    )
    for tenant, n in rows:
        pending.add_metric([str(tenant.id)], n)
        limits.add_metric([str(tenant.id)], backpressure.limit_of(tenant))
    yield pending
    yield limits


@_or_nothing("oldest waiting job")
def _oldest_waiting_gauge() -> Iterator[GaugeMetricFamily]:
    """Age of the oldest waiting job (0: none waits): a conversation whose turn never comes
    (see ops/RUNBOOK.md#stuck-conversation) makes it grow without bound."""
    since = stats.oldest_waiting_since()
    age = 0.0 if since is None else max(0.0, (utcnow() - since).total_seconds())
    yield GaugeMetricFamily(
        "agentq_oldest_waiting_job_seconds",
        "Age of the oldest job waiting for its turn (0: none waits).",
        value=age,
    )


class CircuitCollector(Collector):
    """`agentq_circuit_open{profile}`, read from Redis at scrape time: the breaker's
    state is shared by all workers, so one process (the API) reports it."""

    @_or_nothing("circuit states")
    def collect(self) -> Iterator[Any]:
        found = breaker.states(profiles.all())
        gauge = GaugeMetricFamily(
            "agentq_circuit_open",
            "1 while a model profile's circuit breaker is open or half-open (its jobs wait).",
            labels=["profile"],
        )
        for name, state in found.items():
            gauge.add_metric([name], 0 if state.state == breaker.CLOSED else 1)
        yield gauge


class FeedLagCollector(Collector):
    """The stored feed's lag on PostgreSQL, read at scrape time: readers get an event
    only once every transaction older than its own has ended, so one long transaction
    anywhere on the server holds back everything committed after it began (see
    ops/RUNBOOK.md#feed-lag). Nothing on SQLite."""

    @_or_nothing("feed lag")
    def collect(self) -> Iterator[Any]:
        found = feed.lag()
        if found is None:
            return
        now = utcnow()

        def age(since: datetime | None) -> float:
            return 0.0 if since is None else max(0.0, (now - since).total_seconds())

        yield GaugeMetricFamily(
            "agentq_feed_lag_seconds",
            "Age of the oldest committed event the feed does not hand out yet (0: none "
            "waits): an older transaction is still open.",
            value=age(found.held_since),
        )
        yield GaugeMetricFamily(
            "agentq_feed_oldest_transaction_seconds",
            "Age of the oldest open transaction on the database server that holds a "
            "transaction id (0: none): the feed holds back every event committed after it "
            "began.",
            value=age(found.writer_since),
        )


def process_registry() -> CollectorRegistry:
    """This process's metrics, or the multiprocess aggregate under prefork."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


_state: CollectorRegistry | None = None


def state_registry() -> CollectorRegistry:
    """What the API serves on `/metrics`: process metrics plus the state gauges."""
    global _state
    if _state is None:
        registry = CollectorRegistry()
        registry.register(StateCollector())
        registry.register(CircuitCollector())
        registry.register(FeedLagCollector())
        _state = registry
    return _state


class _Both(Collector):
    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Any]:
        for registry in self.registries:
            yield from registry.collect()


def _combined(*, state: bool) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    parts = [process_registry(), *([state_registry()] if state else [])]
    registry.register(_Both(*parts))
    return registry


def render(*, state: bool = True) -> tuple[bytes, str]:
    """(body, content type) for a `/metrics` response; the API calls `render()`."""
    return generate_latest(_combined(state=state)), CONTENT_TYPE_LATEST


# -- worker exposure ----------------------------------------------------------------


_server_port: int | None = None


def serve(port: int, addr: str = "0.0.0.0", *, state: bool = False) -> int:  # noqa: S104
    """Serve this process's metrics on `port` (once a process), with the state gauges
    too if `state` (the API's own metrics port). Returns the port."""
    global _server_port
    if _server_port is None:
        registry = _combined(state=True) if state else process_registry()
        start_http_server(port, addr=addr, registry=registry)
        _server_port = port
        log.info("metrics on :%d/metrics", port)
    return _server_port


def connect_worker_signals() -> None:
    """Start the metrics server when a Celery worker starts, if AGENTQ_METRICS_PORT is set.

    `worker_init` runs once in the main worker process, before the pool starts.
    """
    from celery.signals import worker_init

    @worker_init.connect(weak=False)
    def _start(**_: object) -> None:
        port = int(os.environ.get(PORT_ENV) or 0)
        if port:
            try:
                serve(port)
            except OSError as exc:  # the worker runs on; only its metrics are missing
                log.warning("metrics port %d unavailable: %s", port, exc)
