"""`celery -A workers.app worker`: the same app as `celery -A agentq.worker worker`."""

from agentq.worker import app

__all__ = ["app"]
