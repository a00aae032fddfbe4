"""The Celery side: how agentq names its tasks and queues, and how it sends them.

The library sends tasks by name, so it never imports the worker code; `workers/app.py`
builds the app that registers them.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from celery import Celery
from kombu import Queue

from agentq.config import Settings, get_settings

#: short control work: debounce timers, dispatch, completion, reconciliation
CONTROL_QUEUE = "agentq.control"
#: long, I/O-bound LLM calls; served by a threads or gevent pool
LLM_QUEUE = "agentq.llm"
QUEUES = (CONTROL_QUEUE, LLM_QUEUE)

#: Redis connections one process may hold for the broker (acks, sends) at once
BROKER_MAX_CONNECTIONS = 2000

DISPATCH = "agentq.dispatch"
ADVANCE = "agentq.advance"
WAKE_AGENT = "agentq.wake_agent"
RUN_JOB = "agentq.run_job"
COMPLETE = "agentq.complete"
RECONCILE = "agentq.reconcile"

ROUTES = {
    DISPATCH: CONTROL_QUEUE,
    ADVANCE: CONTROL_QUEUE,
    WAKE_AGENT: CONTROL_QUEUE,
    RUN_JOB: LLM_QUEUE,
    COMPLETE: CONTROL_QUEUE,
    RECONCILE: CONTROL_QUEUE,
}


def make_celery(settings: Settings | None = None, main: str = "agentq") -> Celery:
    settings = settings or get_settings()
    app = Celery(main, broker=settings.redis_url)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Celery redelivers an unacked message after this; agentq keeps every countdown
            # far shorter (config checks), and every task is idempotent anyway.
            "visibility_timeout": settings.visibility_timeout_seconds,
            # A threads/gevent pool of thousands acks from many threads at once.
            "max_connections": BROKER_MAX_CONNECTIONS,
        },
        broker_pool_limit=BROKER_MAX_CONNECTIONS,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A message is acknowledged after its task ran, so a worker dying mid-task loses
        # nothing; tasks are idempotent, so running twice is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CONTROL_QUEUE,
        task_queues=[Queue(q, routing_key=q) for q in QUEUES],
        task_routes={name: {"queue": q, "routing_key": q} for name, q in ROUTES.items()},
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        # No beat_schedule: `agentq beat` is the one route that runs the reconciler.
    )
    return app


_lock = threading.Lock()
_apps: dict[int, Celery] = {}


def get_app() -> Celery:
    """The Celery app used to send tasks from this process."""
    pid = os.getpid()
    app = _apps.get(pid)
    if app is None:
        with _lock:
            app = _apps.get(pid)
            if app is None:
                app = _apps[pid] = make_celery()
    return app


def reset_app() -> None:
    with _lock:
        _apps.clear()


def send(name: str, *args: Any, countdown: float | None = None) -> None:
    """Send task `name` with id-only arguments (UUIDs become strings)."""
    args = tuple(str(a) if isinstance(a, uuid.UUID) else a for a in args)
    get_app().send_task(
        name,
        args=args,
        countdown=countdown if countdown and countdown > 0 else None,
        queue=ROUTES.get(name, CONTROL_QUEUE),
    )
