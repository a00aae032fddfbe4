"""Thin adapters to what agentq runs on: Celery, Redis, the limiter."""
