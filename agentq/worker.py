"""The Celery app and its tasks: `celery -A agentq.worker worker` (or `agentq worker`;
`celery -A workers.app` in a checkout is the same app).

Queues: `agentq.control` (short work: debounce timers, dispatch, completion,
reconciliation) and `agentq.llm` (LLM calls: seconds each, run them on a threads or
gevent pool). Tasks are thin: ids in, one entry point of `agentq.turn` out. Every task is
idempotent.
"""

from __future__ import annotations

import os

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from agentq import logging as agentq_logging
from agentq import tracing, turn
from agentq.ops import reconcile
from agentq.providers import close_providers
from agentq.runtime import metrics, timers
from agentq.runtime.broker import CONTROL_QUEUE, make_celery
from agentq.runtime.redis import close_redis
from agentq.store.session import DatabaseError, dispose_engines

app = make_celery(main="agentq")
metrics.connect_worker_signals()  # /metrics on AGENTQ_METRICS_PORT
agentq_logging.connect_celery_signals()  # JSON logs with ids, secrets redacted
tracing.connect_worker_signals()  # no-op unless AGENTQ_OTEL=1 and the otel extra


#: this process's debounce scheduler, with the pid that started it
_scheduler: tuple[int, timers.Scheduler] | None = None


def _start_scheduler() -> None:
    """Fire due debounce windows from this process (`timers.Scheduler`), once per
    process, if it works the control queue: where tasks run, so does the loop."""
    global _scheduler
    if CONTROL_QUEUE not in app.amqp.queues.consume_from:
        return
    if _scheduler is None or _scheduler[0] != os.getpid():
        _scheduler = (os.getpid(), timers.Scheduler(turn.fire_taken).start())


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    # A prefork child must not reuse its parent's sockets.
    dispose_engines()
    close_redis()
    close_providers()
    _start_scheduler()  # prefork (and solo): tasks run in this process


@worker_ready.connect
def _on_ready(sender: object = None, **_: object) -> None:
    pool = getattr(getattr(sender, "controller", None), "pool_cls", None)
    if "prefork" not in getattr(pool, "__module__", "prefork"):
        _start_scheduler()  # threads, gevent: tasks run in the main process


@worker_shutdown.connect
def _on_shutdown(**_: object) -> None:
    if _scheduler is not None and _scheduler[0] == os.getpid():
        _scheduler[1].stop()


#: database hiccups (deadlock victim, failover, a restart) are retried; tasks are idempotent
RETRY = {
    "autoretry_for": (DatabaseError, ConnectionError),
    "retry_backoff": 0.5,
    "retry_backoff_max": 10,
    "retry_jitter": True,
    "max_retries": 8,
}


@app.task(name="agentq.dispatch", **RETRY)
def dispatch(conversation_id: str) -> None:
    """Debounce timer: dispatch the conversation's pending messages if they are due."""
    turn.fire(conversation_id)


@app.task(name="agentq.advance", **RETRY)
def advance(conversation_id: str) -> None:
    """Start the conversation's next job (or its delayed retry) if none is running."""
    turn.advance(conversation_id)


@app.task(name="agentq.wake_agent", **RETRY)
def wake_agent(agent_id: str) -> None:
    """An agent's check: wake the conversations parked at its limits, if it can take any."""
    turn.check_agent(agent_id)


@app.task(name="agentq.run_job", **RETRY)
def run_job(job_id: str, token: int) -> None:
    """Call the LLM for a claimed job, then complete it."""
    turn.run_job(job_id, token)


@app.task(name="agentq.complete", **RETRY)
def complete(job_id: str) -> None:
    """Write a job's stored answer as its reply (once, however often it runs)."""
    turn.complete(job_id)


@app.task(name="agentq.reconcile", **RETRY)
def reconcile_pass() -> dict[str, int]:
    """Re-drive whatever the database says is unfinished."""
    return reconcile.reconcile_once().as_dict()
