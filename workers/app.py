"""`celery -A workers.app worker`: the same app as `celery -A agentq.runtime.app worker`."""

from agentq.runtime.app import app

__all__ = ["app"]
