"""The HTTP API (`agentq api`): FastAPI routers over the same functions as `agentq.Client`."""

from agentq.api.app import create_app

__all__ = ["create_app"]
