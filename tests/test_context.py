"""The prompt of a job (SQLite and PostgreSQL): the history ends at its last trigger
message, so it never answers what a later job will; replies written since are in it."""

from __future__ import annotations

from agentq import turn
from agentq.client import Client
from agentq.providers import ChatResult
from tests.helpers import jobs_of, make_dm

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


def contents(job_id: object, token: int) -> list[str]:
    call = turn.prepare(job_id, token)  # type: ignore[arg-type]
    assert call is not None and call.request is not None
    return [m.content for m in call.request.messages[1:]]  # after the system prompt


def test_history_ends_at_the_jobs_last_trigger_and_keeps_replies(db: str) -> None:
    client = Client()
    conv, user, _ = make_dm(client, settings=NOW)
    client.post_message(conv.id, user.id, "first")
    (first,) = turn.dispatch_due(conv.id).jobs
    claim = turn.advance(conv.id)
    assert claim is not None and claim.job_id == first
    # A message that arrives before the first job's prompt is built is the next job's.
    client.post_message(conv.id, user.id, "second")
    assert contents(first, claim.token) == ["first"]

    # Completing it dispatches what waited and claims the next job at once.
    assert turn.complete(first, ChatResult(content="answer to first", model="m"), claim.token)
    _, second = jobs_of(conv.id)
    assert second.status == "active"
    # Its prompt has every message up to its trigger, and the reply written since
    # (which came after its trigger).
    assert contents(second.id, second.lease_token) == ["first", "second", "answer to first"]
