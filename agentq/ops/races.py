"""What a lost race looks like to the faces: the error a database constraint raises when a
concurrent write got there first. The store turns the races it expects into
`agentq.errors.Conflict`; the API answers any other one 409 too, never 500."""

from __future__ import annotations

from agentq.store.session import ConstraintError

__all__ = ["ConstraintError"]
