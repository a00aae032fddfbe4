"""Token streaming to producers over real SSE clients (`httpx-sse`, and `curl -N`), and
through `Client.stream`: the deltas add up to the stored reply, and a subscriber joining
mid-reply can tell where it joined."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from agentq.client import Client
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.api_support import api_server, cli_create_key
from tests.conftest import stack_with
from tests.helpers import make_dm, replies_of, wait_until

pytestmark = pytest.mark.integration

#: long enough that the reply streams for about a second and a half
QUESTION = " ".join(f"word{i}" for i in range(40))


class Subscriber:
    """Collects a stream's records, in a thread, until `agent.responded`."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.opened = threading.Event()

    def add(self, event: str, data: str) -> None:
        if not data:  # the opening `retry:` block carries no record
            return
        record = json.loads(data)
        self.records.append(record)
        if event == "agent.responded":
            self.done.set()

    def tokens(self) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.records if r["type"] == "agent.token"]

    def types(self) -> list[str]:
        return [r["type"] for r in self.records]


def _httpx_sse(url: str, key: str, sub: Subscriber) -> None:
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=30)) as http,
        connect_sse(http, "GET", url, headers={"Authorization": f"Bearer {key}"}) as source,
    ):
        sub.opened.set()
        for sse in source.iter_sse():
            sub.add(sse.event, sse.data)
            if sub.done.is_set():
                return


def _curl(url: str, key: str, sub: Subscriber) -> None:
    proc = subprocess.Popen(
        ["curl", "-sN", "--max-time", "30", "-H", f"Authorization: Bearer {key}", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    event = ""
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith(": connected"):
                sub.opened.set()
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                sub.add(event, line[len("data: ") :])
                if sub.done.is_set():
                    return
    finally:
        proc.kill()
        proc.wait()


def _api_dm(http: httpx.Client) -> tuple[str, str]:
    agent = http.post("/v1/agents", json={"name": f"talker-{uuid.uuid4().hex[:8]}"})
    assert agent.status_code == 201, agent.text
    conv = http.post(
        "/v1/conversations",
        json={"kind": "dm", "settings": {"debounce_seconds": 0, "max_wait_seconds": 0}},
    )
    assert conv.status_code == 201, conv.text
    cid = conv.json()["id"]
    http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent.json()["id"]})
    user = http.post(f"/v1/conversations/{cid}/participants", json={"user_id": "u1"})
    return cid, user.json()["id"]


def test_sse_subscribers_get_the_reply_as_it_is_written(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    with (
        FakeLLMServer(FakeLLMConfig(latency=0.1, token_delay=0.03)) as llm,
        stack_with(base_env, tmp_path, llm) as stack,
    ):
        stack.start_worker(concurrency=4)
        key = cli_create_key(stack.env)
        with (
            api_server(stack.env, tmp_path) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as http,
        ):
            cid, user_id = _api_dm(http)
            url = f"{server.url}/v1/conversations/{cid}/stream?tokens=true"
            early, late = Subscriber(), Subscriber()
            threading.Thread(target=_httpx_sse, args=(url, key, early), daemon=True).start()
            assert early.opened.wait(15), "the first stream did not open"
            posted = http.post(
                f"/v1/conversations/{cid}/messages",
                json={"author_id": user_id, "content": QUESTION},
            )
            assert posted.status_code in (201, 202), posted.text
            # The second subscriber joins once the reply has started.
            wait_until(lambda: len(early.tokens()) >= 3, timeout=30, what="a few tokens")
            threading.Thread(target=_curl, args=(url, key, late), daemon=True).start()
            assert early.done.wait(30) and late.done.wait(30), "agent.responded did not come"
            (reply,) = http.get(f"/v1/conversations/{cid}/messages?after_seq=1").json()["items"]

    content = reply["content"]
    assert len(content) > 100
    tokens = early.tokens()
    assert "".join(t["text"] for t in tokens) == content
    assert [t["seq"] for t in tokens] == list(range(1, len(tokens) + 1))
    assert early.types().index("agent.token") < early.types().index("agent.responded")
    # The late subscriber joined mid-reply: its first offset says so, and the rest follows.
    joined = late.tokens()
    assert joined and joined[0]["offset"] > 0
    assert content[: joined[0]["offset"]] + "".join(t["text"] for t in joined) == content
    assert late.types()[-1] == "agent.responded"


def test_client_stream_yields_tokens_then_the_reply(live: Any, fake_llm: FakeLLMServer) -> None:
    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    got: list[dict[str, Any]] = []
    opened = threading.Event()

    def follow() -> None:
        stream = client.stream(conv.id, timeout=15)
        opened.set()
        for record in stream:
            got.append(record)
            if record["type"] == "agent.responded":
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert opened.wait(5)
    client.post_message(conv.id, user.id, QUESTION)
    thread.join(30)
    (reply,) = replies_of(conv.id)
    texts = [r["payload"]["text"] for r in got if r["type"] == "agent.token"]
    assert "".join(texts) == reply.content
    assert got[-1]["type"] == "agent.responded"
