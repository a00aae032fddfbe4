"""The Celery app operators point `celery -A workers.app` at, in a checkout.

It is the package's own app (`agentq.worker`); this folder is not installed.
"""
