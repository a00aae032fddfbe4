"""The fake LLM server, over real HTTP, in a subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.01, model="fake-model") as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_llm(llm: FakeLLMServer) -> None:
    llm.reset()


@pytest.fixture
def http(llm: FakeLLMServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm.url, timeout=10.0) as client:
        yield client


def chat_body(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": content}], **extra}


def wait_for(
    llm: FakeLLMServer, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """The fake's statistics once `check` holds of them (or the last ones seen)."""
    deadline = time.monotonic() + timeout
    stats = llm.stats()
    while not check(stats) and time.monotonic() < deadline:
        time.sleep(0.02)
        stats = llm.stats()
    return stats


def test_help_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agentq.testing.fake_llm", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--latency" in out.stdout and "--rate-429" in out.stdout


def test_healthz_and_models(llm: FakeLLMServer, http: httpx.Client) -> None:
    assert httpx.get(llm.base_url + "/healthz").json() == {"status": "ok"}
    models = http.get("/models").json()
    assert models["data"][0]["id"] == "fake-model"


def test_chat_completion_has_the_openai_shape(http: httpx.Client) -> None:
    response = http.post("/chat/completions", json=chat_body("what is up"))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "m1"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "reply to: what is up"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == 5


def test_stream_sends_sse_chunks_ending_with_done(http: httpx.Client) -> None:
    body = chat_body("a b", stream=True, stream_options={"include_usage": True})
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "reply to: a b"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


def test_messages_has_the_anthropic_shape(http: httpx.Client) -> None:
    response = http.post("/messages", json={**chat_body("yo"), "system": "be brief"})
    data = response.json()
    assert data["type"] == "message" and data["stop_reason"] == "end_turn"
    assert data["content"] == [{"type": "text", "text": "reply to: yo"}]
    assert data["usage"]["output_tokens"] == 3


def test_reply_quotes_at_most_200_characters(http: httpx.Client) -> None:
    content = http.post("/chat/completions", json=chat_body("x" * 5000)).json()
    assert content["choices"][0]["message"]["content"] == "reply to: " + "x" * 200


def test_max_tokens_truncates_with_finish_reason_length(
    llm: FakeLLMServer, http: httpx.Client
) -> None:
    data = http.post("/chat/completions", json=chat_body("a b c d", max_tokens=2)).json()
    assert data["choices"][0]["message"]["content"] == "reply to:"
    assert data["choices"][0]["finish_reason"] == "length"
    llm.control(max_tokens=3)
    data = http.post("/chat/completions", json=chat_body("a b c d")).json()
    assert data["choices"][0]["message"]["content"] == "reply to: a"


def test_script_is_answered_in_order_then_knobs_apply(
    llm: FakeLLMServer, http: httpx.Client
) -> None:
    llm.control(script=[429, 500, "badjson", 200], retry_after=2)
    assert llm.stats()["script_remaining"] == [429, 500, "badjson", 200]
    first = http.post("/chat/completions", json=chat_body())
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert http.post("/chat/completions", json=chat_body()).status_code == 500
    bad = http.post("/chat/completions", json=chat_body())
    assert bad.status_code == 200
    with pytest.raises(ValueError):
        bad.json()
    assert http.post("/chat/completions", json=chat_body()).status_code == 200
    assert http.post("/chat/completions", json=chat_body()).status_code == 200  # knobs
    assert llm.stats()["by_status"] == {"429": 1, "500": 1, "200": 3}


def test_rates_of_one_always_fail(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(error_rate=1.0)
    assert {http.post("/chat/completions", json=chat_body()).status_code for _ in range(5)} == {500}
    llm.control(error_rate=0.0, rate_429=1.0, retry_after=0.5)
    response = http.post("/messages", json=chat_body())
    assert response.status_code == 429 and response.headers["retry-after"] == "0.5"
    assert response.json()["type"] == "error"


def test_error_rate_is_roughly_the_fraction_asked(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(error_rate=0.5, latency=0.0, seed=7)
    statuses = [http.post("/chat/completions", json=chat_body()).status_code for _ in range(200)]
    assert 60 <= statuses.count(500) <= 140


def test_hang_outlasts_the_client_timeout(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(timeout_rate=1.0, hang_seconds=5)
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", json=chat_body(), timeout=0.3)
    # The client closed the connection on its timeout: the fake sees it go and stops.
    stats = wait_for(llm, lambda s: s["client_disconnects"] == 1)
    assert time.monotonic() - start < 2
    assert stats["in_flight"] == 0 and stats["completed"] == 0
    assert stats["by_status"] == {"499": 1}
    assert stats["disconnects_at"][0] - stats["arrivals"][0] < 1.5


async def _raw_post(port: int, path: str, body: dict[str, Any]) -> int:
    """One HTTP/1.1 request on its own connection; the status code. (httpx's AsyncClient
    spends seconds managing its pool at this concurrency, which is not what is tested.)"""
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return int(response.split(b" ", 2)[1])


def test_a_thousand_slow_requests_are_held_concurrently(llm: FakeLLMServer) -> None:
    llm.control(latency=2.0)
    n = 1000

    async def burst() -> list[int]:
        return await asyncio.gather(
            *(_raw_post(llm.port, "/v1/chat/completions", chat_body(str(i))) for i in range(n))
        )

    start = time.monotonic()
    statuses = asyncio.run(burst())
    elapsed = time.monotonic() - start
    assert statuses == [200] * n
    assert elapsed < 10  # 2 s each, held side by side rather than one after another
    stats = llm.stats()
    assert stats["requests"] == n and stats["in_flight"] == 0
    assert stats["peak_in_flight"] >= n // 2


def test_stats_record_arrivals_and_reset(llm: FakeLLMServer, http: httpx.Client) -> None:
    before = time.time()
    http.post("/chat/completions", json=chat_body())
    with http.stream("POST", "/chat/completions", json=chat_body(stream=True)) as response:
        response.read()
    stats = llm.stats()
    assert stats["requests"] == 2 and stats["in_flight"] == 0 and stats["peak_in_flight"] >= 1
    assert len(stats["arrivals"]) == 2
    assert before - 1 <= stats["arrivals"][0] <= stats["last_request_at"] <= time.time() + 1
    llm.reset_stats()
    stats = llm.stats()
    assert stats["requests"] == 0 and stats["arrivals"] == [] and stats["by_status"] == {}


def test_reset_restores_the_starting_knobs(llm: FakeLLMServer) -> None:
    llm.control(latency=2.0, script=[500])
    llm.reset()
    stats = llm.stats()
    assert stats["config"]["latency"] == 0.01 and stats["script_remaining"] == []


def test_control_rejects_unknown_knobs_and_bad_scripts(llm: FakeLLMServer) -> None:
    with pytest.raises(ValueError, match="unknown knob 'latncy'"):
        llm.control(latncy=1)
    with pytest.raises(ValueError, match="script"):
        llm.control(script=[42])
    with pytest.raises(ValueError, match="error_rate"):
        llm.control(error_rate=1.5)
    with pytest.raises(ValueError, match="unknown knob"):
        FakeLLMServer(bogus=1)


def test_malformed_requests_get_400(http: httpx.Client) -> None:
    assert http.post("/chat/completions", content=b"{nope").status_code == 400
    assert http.post("/chat/completions", json={"model": "m"}).status_code == 400
    assert http.post("/messages", json={"model": "m", "messages": "hi"}).status_code == 400


def test_api_key_knob_requires_the_key(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(api_key="k1")
    assert http.post("/chat/completions", json=chat_body()).status_code == 401
    ok = http.post("/chat/completions", json=chat_body(), headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200
    assert http.post("/messages", json=chat_body(), headers={"x-api-key": "k1"}).status_code == 200


def test_server_started_with_knobs_uses_them() -> None:
    config = FakeLLMConfig(latency=0.0, retry_after=3)
    with FakeLLMServer(config, rate_429=1.0) as server:
        response = httpx.post(server.url + "/chat/completions", json=chat_body())
        assert response.status_code == 429 and response.headers["retry-after"] == "3"
        assert server.stats()["config"]["rate_429"] == 1.0
    with pytest.raises(RuntimeError, match="not running"):
        server.stats()


# -- today's APIs ---------------------------------------------------------------------------


def test_anthropic_stream_has_the_messages_event_shape(http: httpx.Client) -> None:
    body = {**chat_body("a b"), "max_tokens": 50, "stream": True}
    with http.stream("POST", "/messages", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    events = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
    data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert events == [d["type"] for d in data]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == "reply to: a b"
    final = next(d for d in data if d["type"] == "message_delta")
    assert final["delta"]["stop_reason"] == "end_turn" and final["usage"]["output_tokens"] == 4


def test_script_words_answer_like_todays_apis(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(
        retry_after=2,
        script=["s408", "s409_retry", "s500_noretry", "quota", "ra_ms", "ra_date", "nulerror"],
    )
    assert http.post("/chat/completions", json=chat_body()).status_code == 408
    conflict = http.post("/chat/completions", json=chat_body())
    assert conflict.status_code == 409 and conflict.headers["x-should-retry"] == "true"
    final = http.post("/chat/completions", json=chat_body())
    assert final.status_code == 500 and final.headers["x-should-retry"] == "false"
    quota = http.post("/chat/completions", json=chat_body())
    assert quota.status_code == 429 and "retry-after" not in quota.headers
    assert quota.json()["error"]["code"] == quota.json()["error"]["type"] == "insufficient_quota"
    ms = http.post("/chat/completions", json=chat_body())
    assert ms.headers["retry-after-ms"] == "2000" and "retry-after" not in ms.headers
    dated = http.post("/chat/completions", json=chat_body())
    ahead = parsedate_to_datetime(dated.headers["retry-after"]).timestamp() - time.time()
    assert 1.0 < ahead <= 3.0
    nul = http.post("/chat/completions", json=chat_body())
    assert nul.status_code == 500 and b"\x00" in nul.content


def test_script_words_for_odd_answers(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(script=["refusal", "empty", "length", "longmodel", "nulmodel", "hugetokens"])
    refusal = http.post("/chat/completions", json=chat_body()).json()["choices"][0]
    assert refusal["message"]["content"] is None and refusal["message"]["refusal"]
    empty = http.post("/chat/completions", json=chat_body()).json()["choices"][0]
    assert empty["message"]["content"] == "" and empty["finish_reason"] == "stop"
    cut = http.post("/messages", json=chat_body("a b c")).json()
    assert cut["stop_reason"] == "max_tokens" and cut["content"][0]["text"] == "reply to:"
    assert len(http.post("/chat/completions", json=chat_body()).json()["model"]) == 300
    assert "\x00" in http.post("/chat/completions", json=chat_body()).json()["model"]
    usage = http.post("/messages", json=chat_body()).json()["usage"]
    assert usage == {"input_tokens": 3_000_000_000, "output_tokens": 3_000_000_000}


def test_reject_knobs(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(reject_max_tokens_for="^o[0-9]", reject_trailing_assistant="true")
    assert llm.stats()["config"]["reject_trailing_assistant"] is True
    old = http.post("/chat/completions", json={**chat_body(), "model": "o3", "max_tokens": 5})
    assert old.status_code == 400 and old.json()["error"]["param"] == "max_tokens"
    new = {**chat_body(), "model": "o3", "max_completion_tokens": 5}
    assert http.post("/chat/completions", json=new).status_code == 200
    other = {**chat_body(), "model": "gpt-4o", "max_tokens": 5}
    assert http.post("/chat/completions", json=other).status_code == 200
    prefill = chat_body()
    prefill["messages"].append({"role": "assistant", "content": "Sure,"})
    assert http.post("/messages", json=prefill).status_code == 400
    assert http.post("/chat/completions", json=prefill).status_code == 200  # Anthropic only
    with pytest.raises(ValueError, match="reject_max_tokens_for"):
        llm.control(reject_max_tokens_for="(unclosed")


def test_hold_holds_one_call(llm: FakeLLMServer, http: httpx.Client) -> None:
    llm.control(script=["hold:0.6"])
    start = time.monotonic()
    assert http.post("/chat/completions", json=chat_body()).status_code == 200
    assert time.monotonic() - start >= 0.6
    start = time.monotonic()
    http.post("/chat/completions", json=chat_body())
    assert time.monotonic() - start < 0.5
    assert llm.stats()["completed"] == 2
    with pytest.raises(ValueError, match="hold"):
        llm.control(script=["hold:soon"])


def test_a_stream_closed_by_the_client_counts_as_a_disconnect(
    llm: FakeLLMServer, http: httpx.Client
) -> None:
    llm.control(token_delay=0.5)
    with http.stream("POST", "/chat/completions", json=chat_body("a b c", stream=True)) as r:
        next(r.iter_lines())  # the first chunk, then the client goes
    stats = wait_for(llm, lambda s: s["client_disconnects"] == 1)
    assert stats["client_disconnects"] == 1 and stats["completed"] == 0
    assert stats["in_flight"] == 0 and stats["by_status"] == {"499": 1}
    with http.stream("POST", "/chat/completions", json=chat_body("a", stream=True)) as r:
        r.read()
    assert wait_for(llm, lambda s: s["completed"] == 1)["completed"] == 1


def test_boolean_knobs_on_the_command_line() -> None:
    with FakeLLMServer(reject_trailing_assistant=True, latency=0.0) as server:
        assert server.stats()["config"]["reject_trailing_assistant"] is True
        body = {"model": "m", "messages": [{"role": "assistant", "content": "x"}]}
        assert httpx.post(server.url + "/messages", json=body).status_code == 400
