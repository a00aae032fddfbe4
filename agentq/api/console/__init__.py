"""The operator console: `/console`, server-rendered pages of conversations and where
each stands, a conversation's timeline (jobs, attempts, latency split, tokens live),
agents (slots, rate, waiting work; pause and resume), failed jobs (retry), providers
(circuits, recent error rates). Served by the API process; see README, Console."""

from agentq.api.console.routes import router

__all__ = ["router"]
