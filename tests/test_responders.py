"""Who answers a batch of pending messages (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

from agentq import turn
from agentq.client import Client
from tests.helpers import jobs_of, make_dm, trigger_links

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}


def channel(client: Client) -> tuple:
    tag = uuid.uuid4().hex[:6]
    chef = client.create_agent(f"Chef{tag}", role="cook", goal="recipes for dinner and baking")
    cash = client.create_agent(f"Cash{tag}", role="accountant", goal="taxes budgets invoices")
    conv = client.create_conversation("channel", settings=NOW)
    client.add_participant(conv.id, agent=chef.id)
    client.add_participant(conv.id, agent=cash.id)
    user = client.add_participant(conv.id, user_id="pat")
    return conv, user, chef, cash


def test_mention_routes_to_that_agent(db: str) -> None:
    client = Client()
    conv, user, chef, cash = channel(client)
    client.post_message(conv.id, user.id, f"@{cash.name} can you check this?")
    (job_id,) = turn.dispatch_due(conv.id).jobs
    assert client.get_job(job_id).agent_id == cash.id


def test_without_mention_the_most_relevant_agent_answers(db: str) -> None:
    client = Client()
    conv, user, chef, cash = channel(client)
    client.post_message(conv.id, user.id, "what should I bake for dinner tonight? any recipes?")
    (job_id,) = turn.dispatch_due(conv.id).jobs
    assert client.get_job(job_id).agent_id == chef.id


def test_user_messages_pending_behind_a_reply_still_get_a_job(db: str) -> None:
    """A reply written while newer user messages waited must not swallow them."""
    from agentq import turn
    from agentq.providers.base import ChatResult

    client = Client()
    conv, user, _ = make_dm(client, settings=NOW)
    client.post_message(conv.id, user.id, "first")
    first = turn.dispatch_due(conv.id).jobs[0]
    claim = turn.advance(conv.id)
    client.post_message(conv.id, user.id, "second, while the first is answered")
    turn.store_result(first, claim.token, ChatResult(content="answer", model="m"))
    turn.complete(first)  # then dispatches what waited, as it is due
    turn.dispatch_due(conv.id)
    first_job, second_job = jobs_of(conv.id)
    assert trigger_links(first_job.id) == [1]
    assert trigger_links(second_job.id) == [2]
