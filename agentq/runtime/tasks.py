"""Celery tasks: ids in, a call into `agentq` out. Every task is idempotent."""

from __future__ import annotations

from agentq import turn
from agentq.ops import reconcile
from agentq.runtime.app import app
from agentq.store.session import DatabaseError

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


@app.task(name="agentq.run_job", **RETRY)
def run_job(job_id: str, token: int) -> None:
    """Call the LLM for a claimed job, then complete it."""
    turn.run_job(job_id, token)


@app.task(name="agentq.complete", **RETRY)
def complete(job_id: str) -> None:
    """Write a job's stored answer as its reply (once, however often it runs)."""
    turn.complete(job_id)


@app.task(name="agentq.ops.reconcile", **RETRY)
def reconcile_pass() -> dict[str, int]:
    """Re-drive whatever the database says is unfinished."""
    return reconcile.reconcile_once().as_dict()
