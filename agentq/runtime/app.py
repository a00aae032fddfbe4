"""The Celery app: `celery -A agentq.runtime.app worker` (or `agentq worker`; `workers.app`
in a checkout is the same app).

Queues: `agentq.control` (short work: debounce timers, dispatch, completion,
reconciliation) and `agentq.llm` (LLM calls: seconds each, run them on a threads or
gevent pool). Tasks themselves live in `agentq.runtime.tasks` and stay thin.
"""

from __future__ import annotations

from celery.signals import worker_process_init

from agentq import logging as agentq_logging
from agentq import tracing
from agentq.ops import metrics
from agentq.providers import close_providers
from agentq.runtime.broker import make_celery
from agentq.runtime.redis import close_redis
from agentq.store.session import dispose_engines

app = make_celery(main="agentq")
app.conf.include = ["agentq.runtime.tasks"]
metrics.connect_worker_signals()  # /metrics on AGENTQ_METRICS_PORT
agentq_logging.connect_celery_signals()  # JSON logs with ids, secrets redacted
tracing.connect_worker_signals()  # no-op unless AGENTQ_OTEL=1 and the otel extra


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    # A prefork child must not reuse its parent's sockets.
    dispose_engines()
    close_redis()
    close_providers()
