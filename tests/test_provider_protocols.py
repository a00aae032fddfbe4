"""Provider protocols as today's APIs speak them, over real HTTP against the fake LLM
configured to behave like them: token-limit parameters, Anthropic's turn rules, finish
reasons, retry rules and their headers, streaming (blocking and async), cancellation that
closes the connection, and hostile answers cleaned before anyone stores them."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from agentq.errors import ProviderError
from agentq.providers import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    acall_with_retries,
    call_with_retries,
    get_provider,
)
from agentq.providers.clean import MODEL_MAX_CHARS, TOKENS_MAX
from agentq.testing.fake_llm import FakeLLMServer
from agentq.testing.fake_llm_replies import REFUSAL_TEXT

API_KEY = "sk-test-PROTOCOLS-0123456789"
REASONING = "^(gpt-5|o[0-9])"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.01) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_llm(llm: FakeLLMServer) -> None:
    llm.reset()


def request_for(
    llm: FakeLLMServer,
    content: str = "hello there",
    *,
    messages: list[ChatMessage] | None = None,
    **kw: Any,
) -> ChatRequest:
    return ChatRequest(
        messages=messages or [ChatMessage("system", "Be terse."), ChatMessage("user", content)],
        model=kw.pop("model", "fake-model"),
        endpoint=llm.url,
        api_key=API_KEY,
        timeout=kw.pop("timeout", 5.0),
        **kw,
    )


def call(
    provider: str,
    request: ChatRequest,
    *,
    mode: str = "sync",
    on_token: Callable[[str], None] | None = None,
    max_retries: int = 3,
    on_retry: Callable[[ProviderError, float], None] | None = None,
) -> ChatResult:
    """One call with retries, blocking ("sync") or on an event loop ("async")."""
    kw: dict[str, Any] = dict(
        max_retries=max_retries,
        backoff_base=0.001,
        backoff_max=0.002,
        on_token=on_token,
        on_retry=on_retry,
    )
    if mode == "sync":
        return call_with_retries(get_provider(provider), request, **kw)
    return asyncio.run(acall_with_retries(get_provider(provider), request, **kw))


def wait_for(
    llm: FakeLLMServer, check: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats = llm.stats()
    while not check(stats) and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = llm.stats()
    return stats


MODES = ["sync", "async"]
PROVIDERS = ["openai", "anthropic"]


# -- OpenAI: the token-limit parameter ------------------------------------------------------


def test_reasoning_model_rejects_max_tokens_and_takes_max_completion_tokens(
    llm: FakeLLMServer,
) -> None:
    llm.control(reject_max_tokens_for=REASONING)
    raw = httpx.post(
        llm.url + "/chat/completions",
        json={
            "model": "gpt-5-mini",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["code"] == "unsupported_parameter"

    old_style = request_for(llm, model="gpt-5-mini", token_param="max_tokens")
    with pytest.raises(ProviderError) as info:
        call("openai", old_style)
    assert info.value.status_code == 400 and not info.value.retryable
    assert info.value.provider_code == "unsupported_parameter"
    assert llm.stats()["requests"] == 2  # the raw one and one call: a 400 is not retried

    result = call("openai", request_for(llm, "a b c d", model="o3", max_tokens=3))
    body = llm.stats()["last_body"]
    assert body["max_completion_tokens"] == 3 and "max_tokens" not in body
    # the limit under its new name is honoured, and a cut reply says so
    assert result.content == "reply to: a" and result.finish_reason == "length"


def test_max_tokens_stays_available_for_older_servers(llm: FakeLLMServer) -> None:
    result = call("openai", request_for(llm, "a b c", token_param="max_tokens", max_tokens=2))
    body = llm.stats()["last_body"]
    assert body["max_tokens"] == 2 and "max_completion_tokens" not in body
    assert result.content == "reply to:" and result.finish_reason == "length"


# -- Anthropic: turns -----------------------------------------------------------------------

HISTORY = [
    ChatMessage("system", "You are Bot."),
    ChatMessage("assistant", "Hi, I am Bot."),  # the agent spoke first
    ChatMessage("user", "first", name="Ada"),
    ChatMessage("user", "second", name="Bob"),
    ChatMessage("assistant", "noted"),
    ChatMessage("assistant", "anything else?"),
    ChatMessage("user", "last question", name="Ada"),
    ChatMessage("assistant", "a reply agentq already stored"),  # ends on the assistant
]


def test_fake_rejects_trailing_assistant_and_repeated_roles(llm: FakeLLMServer) -> None:
    llm.control(reject_trailing_assistant=True)

    def status(roles: list[str]) -> int:
        messages = [{"role": r, "content": f"turn {i}"} for i, r in enumerate(roles)]
        body = {"model": "claude", "max_tokens": 10, "messages": messages}
        return httpx.post(llm.url + "/messages", json=body).status_code

    assert status(["user", "assistant"]) == 400  # no prefill
    assert status(["user", "user"]) == 400
    assert status(["assistant", "user"]) == 400
    assert status(["user", "assistant", "user"]) == 200


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_request_alternates_and_ends_on_the_user(llm: FakeLLMServer, mode: str) -> None:
    llm.control(reject_trailing_assistant=True)
    result = call("anthropic", request_for(llm, messages=HISTORY), mode=mode)
    assert result.content == "reply to: Ada: last question"
    body = llm.stats()["last_body"]
    assert body["system"] == "You are Bot."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    first, middle, last = (m["content"] for m in body["messages"])
    assert first == "(You said earlier: Hi, I am Bot.)\n\nAda: first\n\nBob: second"
    assert middle == "noted\n\nanything else?"
    assert last == "Ada: last question"


def test_anthropic_without_any_user_turn_is_not_sent(llm: FakeLLMServer) -> None:
    only_bot = [ChatMessage("system", "s"), ChatMessage("assistant", "hello?")]
    result = call("anthropic", request_for(llm, messages=only_bot))
    # its own words become the user turn, marked as said earlier
    assert result.content == "reply to: (You said earlier: hello?)"
    with pytest.raises(ProviderError, match="no user turn") as info:
        call("anthropic", request_for(llm, messages=[ChatMessage("system", "s")]))
    assert not info.value.retryable
    assert llm.stats()["requests"] == 1


# -- finish reasons -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_cut_reply_has_finish_reason_length(
    llm: FakeLLMServer, provider: str, stream: bool
) -> None:
    llm.control(script=["length"])
    tokens: list[str] = []
    result = call(
        provider, request_for(llm, "a b c d e"), on_token=tokens.append if stream else None
    )
    assert result.finish_reason == "length"
    assert result.content == "reply to:"
    assert "".join(tokens) == (result.content if stream else "")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_refusal_is_a_visible_outcome(
    llm: FakeLLMServer, provider: str, stream: bool, mode: str
) -> None:
    llm.control(script=["refusal"])
    result = call(
        provider, request_for(llm), mode=mode, on_token=(lambda t: None) if stream else None
    )
    assert result.finish_reason == "refusal"
    # OpenAI says why in `refusal`, which becomes the content; Claude just stops
    assert result.content == (REFUSAL_TEXT if provider == "openai" else "")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_empty_reply_is_returned_as_empty(llm: FakeLLMServer, provider: str, stream: bool) -> None:
    llm.control(script=["empty"])
    result = call(provider, request_for(llm), on_token=(lambda t: None) if stream else None)
    assert result.content == "" and result.finish_reason == "stop"
    assert result.completion_tokens == 0


# -- retry rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_408_and_409_with_x_should_retry_are_retried(
    llm: FakeLLMServer, provider: str, mode: str
) -> None:
    llm.control(script=["s408", "s409_retry", 200])
    result = call(provider, request_for(llm), mode=mode)
    assert result.requests == 3 and result.content == "reply to: hello there"
    assert llm.stats()["by_status"] == {"408": 1, "409": 1, "200": 1}


def test_x_should_retry_false_overrides_a_retryable_status(llm: FakeLLMServer) -> None:
    llm.control(script=["s500_noretry", 200])
    with pytest.raises(ProviderError) as info:
        call("openai", request_for(llm))
    assert info.value.status_code == 500 and not info.value.retryable
    assert llm.stats()["requests"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_insufficient_quota_is_not_retried(llm: FakeLLMServer, mode: str) -> None:
    llm.control(script=["quota", 200])
    with pytest.raises(ProviderError) as info:
        call("openai", request_for(llm), mode=mode)
    assert info.value.status_code == 429 and not info.value.retryable
    assert info.value.provider_code == "insufficient_quota"
    assert info.value.retry_after is None
    assert llm.stats()["requests"] == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("word", ["ra_seconds", "ra_ms", "ra_date"])
def test_retry_after_is_honoured_in_every_form(llm: FakeLLMServer, word: str, mode: str) -> None:
    llm.control(script=[word, 200], retry_after=0.3)
    waits: list[float] = []
    result = call(
        "openai", request_for(llm), mode=mode, on_retry=lambda error, wait: waits.append(wait)
    )
    assert result.requests == 2
    first, second = llm.stats()["arrivals"]
    # the backoff alone would wait at most 2 ms
    if word == "ra_date":
        # an HTTP date has whole seconds: the fake names the first one >= 0.3 s ahead
        assert second >= math.ceil(first + 0.3) - 0.05
        assert waits[0] > 0.25
    else:
        assert second - first >= 0.3
        assert waits == [pytest.approx(0.3, abs=0.01)]


def test_retry_after_is_set_on_retryable_errors_only(llm: FakeLLMServer) -> None:
    llm.control(script=["ra_ms"], retry_after=2.5)
    with pytest.raises(ProviderError) as info:
        get_provider("anthropic").complete(request_for(llm))
    assert info.value.retryable and info.value.retry_after == pytest.approx(2.5)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_cut_short_is_retried(llm: FakeLLMServer, provider: str) -> None:
    llm.control(script=["cut", 200])
    tokens: list[str] = []
    result = call(provider, request_for(llm, "one two three"), on_token=tokens.append)
    assert result.requests == 2 and result.content == "reply to: one two three"
    # the cut attempt's tokens were passed on too; the retry starts over
    assert "".join(tokens).endswith(result.content) and len("".join(tokens)) > len(result.content)


# -- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_deltas_make_up_the_reply(llm: FakeLLMServer, provider: str, mode: str) -> None:
    llm.control(token_delay=0.01)
    tokens: list[str] = []
    threads: set[int] = set()

    def on_token(text: str) -> None:
        tokens.append(text)
        threads.add(threading.get_ident())

    result = call(provider, request_for(llm, "one two three four"), mode=mode, on_token=on_token)
    assert result.content == "reply to: one two three four"
    assert len(tokens) == 6 and "".join(tokens) == result.content
    assert result.finish_reason == "stop"
    assert result.prompt_tokens > 0 and result.completion_tokens == 6  # usage streamed too
    assert llm.stats()["last_body"]["stream"] is True
    if provider == "openai":
        assert llm.stats()["last_body"]["stream_options"] == {"include_usage": True}
    assert threads == {threading.get_ident()}  # asyncio.run's loop runs on this thread


def test_async_calls_share_one_loop_and_many_connections(llm: FakeLLMServer) -> None:
    llm.control(latency=0.5)
    provider = get_provider("openai")

    async def many() -> list[ChatResult]:
        return await asyncio.gather(
            *(provider.acomplete(request_for(llm, f"n{i}")) for i in range(200))
        )

    start = time.monotonic()
    results = asyncio.run(many())
    assert time.monotonic() - start < 5  # side by side, not 200 x 0.5 s
    assert sorted(r.content for r in results) == sorted(f"reply to: n{i}" for i in range(200))
    assert llm.stats()["peak_in_flight"] >= 100
    # a second loop gets a client of its own; the first loop's is gone with it
    assert asyncio.run(provider.acomplete(request_for(llm))).content == "reply to: hello there"


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancelling_the_task_closes_the_request_within_a_second(
    llm: FakeLLMServer, provider: str, stream: bool
) -> None:
    llm.control(script=["hold:5"])

    async def scenario() -> tuple[float, dict[str, Any]]:
        task = asyncio.create_task(
            acall_with_retries(
                get_provider(provider),
                request_for(llm),
                max_retries=3,
                backoff_base=0.01,
                backoff_max=0.02,
                on_token=(lambda t: None) if stream else None,
            )
        )
        held = await asyncio.to_thread(wait_for, llm, lambda s: s["in_flight"] == 1)
        assert held["in_flight"] == 1
        cancelled_at = time.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = await asyncio.to_thread(wait_for, llm, lambda s: s["client_disconnects"] == 1)
        return cancelled_at, stats

    cancelled_at, stats = asyncio.run(scenario())
    assert stats["client_disconnects"] == 1
    assert stats["disconnects_at"][0] - cancelled_at < 1.0
    assert stats["in_flight"] == 0 and stats["completed"] == 0
    assert stats["requests"] == 1  # a cancelled call is not retried
    assert stats["by_status"] == {"499": 1}


def test_cancelling_mid_stream_closes_the_stream(llm: FakeLLMServer) -> None:
    llm.control(token_delay=1.0)
    tokens: list[str] = []

    async def scenario() -> float:
        task = asyncio.create_task(
            get_provider("openai").acomplete(request_for(llm), on_token=tokens.append)
        )
        while not tokens:  # the first word has come; the next is a second away
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.time()

    cancelled_at = asyncio.run(scenario())
    stats = wait_for(llm, lambda s: s["client_disconnects"] == 1)
    assert stats["client_disconnects"] == 1 and stats["completed"] == 0
    assert stats["disconnects_at"][0] - cancelled_at < 1.0
    assert stats["in_flight"] == 0


# -- hostile answers ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_hostile_model_names_and_token_counts_are_cleaned(
    llm: FakeLLMServer, provider: str, stream: bool
) -> None:
    on_token = (lambda t: None) if stream else None
    path = "/chat/completions" if provider == "openai" else "/messages"
    llm.control(script=["longmodel"])
    raw = httpx.post(
        llm.url + path,
        json={"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]},
    ).json()
    assert len(raw["model"]) == 300  # the fake does send it

    llm.control(script=["longmodel", "nulmodel", "hugetokens"])
    long = call(provider, request_for(llm), on_token=on_token)
    assert len(long.model) == MODEL_MAX_CHARS and long.model == raw["model"][:MODEL_MAX_CHARS]
    nul = call(provider, request_for(llm), on_token=on_token)
    assert nul.model == "fakemodel"
    huge = call(provider, request_for(llm), on_token=on_token)
    assert huge.prompt_tokens == TOKENS_MAX and huge.completion_tokens == TOKENS_MAX
    assert huge.content == "reply to: hello there"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_body_with_nul_makes_a_clean_message(
    llm: FakeLLMServer, provider: str, mode: str
) -> None:
    llm.control(script=["nulerror"])
    with pytest.raises(ProviderError) as info:
        call(provider, request_for(llm), mode=mode, max_retries=0)
    message = str(info.value)
    assert "\x00" not in message and "upstream error" in message
    assert info.value.status_code == 500 and info.value.retryable
    assert len(message) <= 250


def test_error_messages_are_cut_and_never_hold_the_key(llm: FakeLLMServer) -> None:
    llm.control(api_key="the-right-key")
    long_key = API_KEY + "x" * 500  # echoed by the fake's 401, then cut
    request = ChatRequest(
        [ChatMessage("user", "hi")], model="m", endpoint=llm.url, api_key=long_key
    )
    with pytest.raises(ProviderError) as info:
        asyncio.run(get_provider("openai").acomplete(request))
    message = str(info.value)
    assert API_KEY not in message and len(message) <= 250
    assert info.value.status_code == 401 and not info.value.retryable
