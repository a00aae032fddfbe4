"""What crosses the broker: ids only, never message content or API keys."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from agentq import turn
from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE
from agentq.runtime.embedded import stored_values
from tests.conftest import Live
from tests.helpers import make_dm

SECRET_TEXT = "my card number is 4242-4242-4242-4242"


def queued_messages(url: str) -> list[dict]:
    found = []
    for raw in stored_values(url):
        try:
            found.append(json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            continue
    return found


@pytest.mark.integration
def test_task_messages_carry_ids_only(isolated: Live) -> None:
    client = isolated.client
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, SECRET_TEXT)
    turn.dispatch_due(conv.id)
    turn.advance(conv.id)  # queues agentq.run_job; no worker consumes it

    messages = queued_messages(isolated.redis.url)
    tasks = [m for m in messages if isinstance(m, dict) and "headers" in m and "body" in m]
    names = {m["headers"]["task"] for m in tasks}
    assert {"agentq.dispatch", "agentq.run_job"} <= names
    queues = {m["properties"]["delivery_info"]["routing_key"] for m in tasks}
    assert queues <= {CONTROL_QUEUE, LLM_QUEUE}
    for m in tasks:
        body = base64.b64decode(m["body"]).decode()
        args, kwargs, _ = json.loads(body)
        assert kwargs == {}
        for arg in args:
            assert isinstance(arg, int) or uuid.UUID(arg)
        whole = json.dumps(m) + body
        assert SECRET_TEXT not in whole and "4242" not in whole
        assert isolated.env["LLM_API_KEY"] not in whole
