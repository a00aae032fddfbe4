"""Providers, retries and the registry, against the fake LLM over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.queues
import os
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentq.errors import ProviderError, UnknownProvider
from agentq.providers import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    Provider,
    acall_with_retries,
    aclose_providers,
    call_with_retries,
    close_providers,
    get_provider,
    provider_names,
    register_provider,
    retry_wait,
)
from agentq.providers.anthropic import AnthropicProvider
from agentq.providers.clean import (
    BODY_SNIPPET_CHARS,
    TOKENS_MAX,
    clamp_tokens,
    clean_content,
    clean_model,
    snippet,
)
from agentq.providers.echo import EchoProvider
from agentq.providers.openai import OpenAIProvider, parse_retry_after
from agentq.providers.retry import observe
from agentq.testing.fake_llm import FakeLLMServer

API_KEY = "sk-test-VERY-SECRET-0123456789"
SECRET_TEXT = "my bank password is hunter2"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.01) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_llm(llm: FakeLLMServer) -> None:
    llm.reset()


def request_for(
    llm: FakeLLMServer, content: str = "hello there", *, timeout: float = 5.0, **kw: object
) -> ChatRequest:
    return ChatRequest(
        messages=[
            ChatMessage("system", "You are terse."),
            ChatMessage("user", content, name="Ada Lovelace"),
        ],
        model="fake-model",
        endpoint=llm.url,
        api_key=API_KEY,
        timeout=timeout,
        **kw,  # type: ignore[arg-type]
    )


def retried(provider: Provider, request: ChatRequest, max_retries: int = 3) -> ChatResult:
    return call_with_retries(
        provider, request, max_retries=max_retries, backoff_base=0.01, backoff_max=0.05
    )


# -- round trips ----------------------------------------------------------------------------


def test_openai_round_trip_returns_reply_and_usage(llm: FakeLLMServer) -> None:
    result = get_provider("openai").complete(request_for(llm))
    assert result.content == "reply to: hello there"
    assert result.model == "fake-model"
    assert result.prompt_tokens > 0 and result.completion_tokens == 4
    assert result.requests == 1 and result.latency > 0


def test_openai_stream_calls_on_token_and_assembles_content(llm: FakeLLMServer) -> None:
    tokens: list[str] = []
    result = get_provider("openai").complete(
        request_for(llm, "one two three"), on_token=tokens.append
    )
    assert result.content == "reply to: one two three"
    assert len(tokens) == 5 and "".join(tokens) == result.content
    assert result.completion_tokens == 5  # usage from the final stream chunk


def test_openai_sends_api_key_as_bearer(llm: FakeLLMServer) -> None:
    llm.control(api_key=API_KEY)
    assert get_provider("openai").complete(request_for(llm)).content == "reply to: hello there"


def test_anthropic_round_trip(llm: FakeLLMServer) -> None:
    llm.control(api_key=API_KEY)  # checks the x-api-key header
    tokens: list[str] = []
    result = get_provider("anthropic").complete(request_for(llm, "hi"), on_token=tokens.append)
    # The Messages API has no `name`, so the speaker is written before the text.
    assert result.content == "reply to: Ada Lovelace: hi"
    # it streams (server-sent events), word by word
    assert tokens == ["reply ", "to: ", "Ada ", "Lovelace: ", "hi"]
    assert result.prompt_tokens > 0 and result.completion_tokens == 5
    assert result.finish_reason == "stop"


def test_max_tokens_truncates_reply(llm: FakeLLMServer) -> None:
    result = get_provider("openai").complete(request_for(llm, "a b c d e f", max_tokens=3))
    assert result.content == "reply to: a"


def test_echo_is_deterministic_and_streams_words() -> None:
    tokens: list[str] = []
    request = ChatRequest(
        [
            ChatMessage("user", "first"),
            ChatMessage("assistant", "x"),
            ChatMessage("user", "hi you"),
        ],
        model="m",
    )
    result = get_provider("echo").complete(request, on_token=tokens.append)
    assert result.content == "echo: hi you"
    assert tokens == ["echo: ", "hi ", "you"]
    assert get_provider("echo").complete(request).content == result.content


# -- retries --------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(llm: FakeLLMServer) -> None:
    llm.control(script=[429, 200], retry_after=1)
    waits: list[float] = []
    result = call_with_retries(
        get_provider("openai"),
        request_for(llm),
        max_retries=3,
        backoff_base=0.01,
        backoff_max=0.05,
        on_retry=lambda error, wait: waits.append(wait),
    )
    assert result.content == "reply to: hello there"
    assert result.requests == 2
    assert waits == [1.0]
    assert result.latency >= 1.0
    stats = llm.stats()
    assert stats["requests"] == 2
    assert stats["by_status"] == {"429": 1, "200": 1}
    first, second = stats["arrivals"]
    assert second - first >= 1.0


def test_always_500_fails_retryable_after_max_retries_plus_one_requests(
    llm: FakeLLMServer,
) -> None:
    llm.control(error_rate=1.0)
    with pytest.raises(ProviderError) as info:
        retried(get_provider("openai"), request_for(llm), max_retries=2)
    assert info.value.retryable and info.value.status_code == 500
    assert llm.stats()["by_status"] == {"500": 3}


def test_400_is_not_retried(llm: FakeLLMServer) -> None:
    llm.control(script=[400])
    with pytest.raises(ProviderError) as info:
        retried(get_provider("openai"), request_for(llm))
    assert not info.value.retryable and info.value.status_code == 400
    assert llm.stats()["requests"] == 1


def test_anthropic_529_overloaded_is_retried(llm: FakeLLMServer) -> None:
    llm.control(script=[529, 200], retry_after=0.1)
    result = retried(get_provider("anthropic"), request_for(llm))
    assert result.requests == 2
    assert llm.stats()["by_status"] == {"529": 1, "200": 1}


def test_timeout_is_a_retryable_error(llm: FakeLLMServer) -> None:
    llm.control(script=["hang"], hang_seconds=3)
    with pytest.raises(ProviderError) as info:
        get_provider("openai").complete(request_for(llm, timeout=0.3))
    assert info.value.retryable
    assert "0.3s" in str(info.value)


def test_timeout_then_success_is_retried(llm: FakeLLMServer) -> None:
    llm.control(script=["hang", 200], hang_seconds=3)
    result = retried(get_provider("openai"), request_for(llm, timeout=0.3))
    assert result.requests == 2 and result.content == "reply to: hello there"


def test_connection_refused_is_a_retryable_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    request = ChatRequest(
        [ChatMessage("user", "hi")], model="m", endpoint=f"http://127.0.0.1:{port}/v1"
    )
    with pytest.raises(ProviderError) as info:
        get_provider("openai").complete(request)
    assert info.value.retryable and info.value.status_code is None


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_json_from_provider_is_not_retried(llm: FakeLLMServer, stream: bool) -> None:
    llm.control(script=["badjson", 200])
    with pytest.raises(ProviderError) as info:
        call_with_retries(
            get_provider("openai"),
            request_for(llm),
            max_retries=3,
            backoff_base=0.01,
            backoff_max=0.05,
            on_token=(lambda t: None) if stream else None,
        )
    assert not info.value.retryable
    assert "invalid response" in str(info.value)
    assert llm.stats()["requests"] == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_reply_without_content_is_an_invalid_response(llm: FakeLLMServer, provider: str) -> None:
    llm.control(script=["nocontent"])
    with pytest.raises(ProviderError, match="invalid response") as info:
        get_provider(provider).complete(request_for(llm))
    assert not info.value.retryable


def test_unknown_key_is_rejected_without_retry(llm: FakeLLMServer) -> None:
    llm.control(api_key="the-right-key")
    with pytest.raises(ProviderError) as info:
        retried(get_provider("openai"), request_for(llm))
    assert info.value.status_code == 401 and not info.value.retryable
    assert llm.stats()["requests"] == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("scenario", ["401-echoing-key", 400, 500, 429, "badjson", "hang"])
def test_errors_never_contain_the_api_key_or_the_message(
    llm: FakeLLMServer, provider: str, scenario: object
) -> None:
    if scenario == "401-echoing-key":
        llm.control(api_key="the-right-key")  # the fake's 401 body quotes the key it got
    else:
        llm.control(script=[scenario], hang_seconds=2, retry_after=0)
    with pytest.raises(ProviderError) as info:
        get_provider(provider).complete(request_for(llm, SECRET_TEXT, timeout=0.3))
    message = str(info.value)
    assert API_KEY not in message and API_KEY[:12] not in message
    assert SECRET_TEXT not in message
    assert len(message) < 300


def test_non_provider_errors_are_not_retried() -> None:
    calls = 0

    class Broken(Provider):
        name = "broken"

        def complete(self, request, *, on_token=None):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            raise KeyError("bug")

    with pytest.raises(KeyError):
        retried(Broken(), ChatRequest([ChatMessage("user", "x")], model="m"))
    assert calls == 1


def test_failing_on_retry_hook_does_not_stop_retries(llm: FakeLLMServer) -> None:
    llm.control(script=[500, 200])

    def hook(error: ProviderError, wait: float) -> None:
        raise RuntimeError("metrics are down")

    result = call_with_retries(
        get_provider("openai"),
        request_for(llm),
        max_retries=1,
        backoff_base=0.01,
        backoff_max=0.05,
        on_retry=hook,
    )
    assert result.requests == 2


# -- connection pooling ---------------------------------------------------------------------


def test_one_provider_serves_hundreds_of_threads_at_once(llm: FakeLLMServer) -> None:
    llm.control(latency=0.5)
    provider = get_provider("openai")
    n = 300
    results: list[str] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            results.append(provider.complete(request_for(llm, f"n{i}")).content)
        except BaseException as exc:  # collected, so the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert errors == []
    assert sorted(results) == sorted(f"reply to: n{i}" for i in range(n))
    assert elapsed < 8  # side by side, not 300 x 0.5 s
    assert llm.stats()["peak_in_flight"] >= n // 3


def test_all_connections_busy_is_a_retryable_error(llm: FakeLLMServer) -> None:
    llm.control(script=["hang"], hang_seconds=1)
    provider = OpenAIProvider(max_connections=1)
    try:
        holder = threading.Thread(target=provider.complete, args=(request_for(llm),))
        holder.start()
        deadline = time.monotonic() + 5
        while llm.stats()["in_flight"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ProviderError, match="busy") as info:
            provider.complete(request_for(llm, timeout=0.2))
        assert info.value.retryable
        holder.join()
        assert provider.complete(request_for(llm)).content == "reply to: hello there"
    finally:
        provider.close()


def _complete_in_child(url: str, out: multiprocessing.queues.Queue[str]) -> None:
    request = ChatRequest([ChatMessage("user", "from the child")], model="m", endpoint=url)
    out.put(get_provider("openai").complete(request).content)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_connections(llm: FakeLLMServer) -> None:
    provider = get_provider("openai")
    provider.complete(request_for(llm))  # the parent now holds a pooled connection
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_complete_in_child, args=(llm.url, out))
    child.start()
    assert out.get(timeout=20) == "reply to: from the child"
    child.join(20)
    assert child.exitcode == 0
    assert provider.complete(request_for(llm)).content == "reply to: hello there"


# -- retry_wait and Retry-After parsing -----------------------------------------------------


def test_retry_wait_is_full_jitter_within_the_cap() -> None:
    for attempt in range(12):
        waits = [retry_wait(attempt, None, 0.5, 4.0) for _ in range(200)]
        assert all(0.0 <= w <= min(4.0, 0.5 * 2**attempt) for w in waits)
    assert retry_wait(3, None, 0.5, 4.0, rand=lambda: 1.0) == 4.0
    assert retry_wait(1, None, 0.5, 4.0, rand=lambda: 1.0) == 1.0
    assert retry_wait(0, None, 0.5, 4.0, rand=lambda: 0.0) == 0.0
    assert retry_wait(10_000, None, 0.5, 4.0, rand=lambda: 1.0) == 4.0  # no overflow


def test_retry_wait_honours_retry_after() -> None:
    error = ProviderError("429", retryable=True, status_code=429, retry_after=7.0)
    assert all(retry_wait(0, error, 0.01, 1.0) == 7.0 for _ in range(50))
    # a longer backoff wins over a shorter Retry-After
    short = ProviderError("429", retryable=True, retry_after=0.1)
    assert retry_wait(5, short, 1.0, 30.0, rand=lambda: 1.0) == 30.0


def test_retry_wait_caps_retry_after_at_60_seconds() -> None:
    error = ProviderError("429", retryable=True, retry_after=3600.0)
    assert retry_wait(0, error, 0.5, 20.0) == 60.0


def test_parse_retry_after_reads_seconds_dates_and_milliseconds() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    future = parse_retry_after({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert future is not None and future > 1e9


# -- registry -------------------------------------------------------------------------------


def test_builtin_providers_are_registered() -> None:
    assert {"openai", "anthropic", "echo"} <= set(provider_names())
    assert isinstance(get_provider("openai"), OpenAIProvider)
    assert isinstance(get_provider("anthropic"), AnthropicProvider)
    assert isinstance(get_provider("echo"), EchoProvider)


def test_get_provider_unknown_name_raises_naming_it() -> None:
    with pytest.raises(UnknownProvider, match="no-such-llm") as info:
        get_provider("no-such-llm")
    assert "openai" in str(info.value)  # and lists the known ones
    with pytest.raises(UnknownProvider, match="nowhere.module:Nope"):
        get_provider("nowhere.module:Nope")


def test_get_provider_returns_one_instance_across_threads() -> None:
    close_providers()
    seen: list[Provider] = []
    threads = [
        threading.Thread(target=lambda: seen.append(get_provider("openai"))) for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(p) for p in seen}) == 1


def test_close_providers_makes_new_instances_that_still_work(llm: FakeLLMServer) -> None:
    before = get_provider("openai")
    before.complete(request_for(llm))
    close_providers()
    after = get_provider("openai")
    assert after is not before
    assert after.complete(request_for(llm)).content == "reply to: hello there"


def test_register_provider_plugs_in_a_custom_provider() -> None:
    @register_provider
    class Shouting(Provider):
        name = "test-shouting"

        def complete(self, request, *, on_token=None):  # type: ignore[no-untyped-def]
            return ChatResult(content=request.messages[-1].content.upper(), model="loud")

    assert "test-shouting" in provider_names()
    result = get_provider("test-shouting").complete(
        ChatRequest([ChatMessage("user", "hi")], model="m")
    )
    assert result.content == "HI"


def test_register_provider_rejects_non_providers() -> None:
    with pytest.raises(TypeError):
        register_provider(dict)  # type: ignore[arg-type]


def test_dotted_path_names_a_plugin_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "agentq_test_plugin.py").write_text(
        textwrap.dedent(
            """
            from agentq.providers import ChatResult, Provider

            class Reverse(Provider):
                name = "reverse"

                def complete(self, request, *, on_token=None):
                    return ChatResult(content=request.messages[-1].content[::-1], model="r")

            NotAProvider = dict
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    provider = get_provider("agentq_test_plugin:Reverse")
    assert provider is get_provider("agentq_test_plugin:Reverse")
    request = ChatRequest([ChatMessage("user", "abc")], model="m")
    assert provider.complete(request).content == "cba"
    with pytest.raises(UnknownProvider, match="agentq_test_plugin:NotAProvider"):
        get_provider("agentq_test_plugin:NotAProvider")
    with pytest.raises(UnknownProvider, match="agentq_test_plugin:Missing"):
        get_provider("agentq_test_plugin:Missing")


# -- async, and cleaning --------------------------------------------------------------------


def test_a_plugin_without_acomplete_still_answers_on_a_loop() -> None:
    class Words(Provider):
        name = "test-words"

        def complete(self, request, *, on_token=None):  # type: ignore[no-untyped-def]
            for word in ("a ", "b"):
                if on_token is not None:
                    on_token(word)
            return ChatResult(content="a b", model="w")

    tokens: list[tuple[str, int]] = []

    async def run() -> ChatResult:
        return await Words().acomplete(
            ChatRequest([ChatMessage("user", "x")], model="m"),
            on_token=lambda t: tokens.append((t, threading.get_ident())),
        )

    assert asyncio.run(run()).content == "a b"
    # relayed to the loop's thread, in order
    assert tokens == [("a ", threading.get_ident()), ("b", threading.get_ident())]


def test_echo_answers_on_a_loop() -> None:
    request = ChatRequest([ChatMessage("user", "hi")], model="m")
    assert asyncio.run(get_provider("echo").acomplete(request)).content == "echo: hi"


def test_aclose_providers_then_calls_still_work(llm: FakeLLMServer) -> None:
    async def twice() -> list[str]:
        provider = get_provider("anthropic")
        first = await provider.acomplete(request_for(llm, "one"))
        await aclose_providers()
        second = await provider.acomplete(request_for(llm, "two"))
        await aclose_providers()
        return [first.content, second.content]

    assert asyncio.run(twice()) == ["reply to: Ada Lovelace: one", "reply to: Ada Lovelace: two"]


def test_clean_helpers() -> None:
    assert clamp_tokens(3_000_000_000) == TOKENS_MAX == 2**31 - 1
    assert clamp_tokens(3e9) == TOKENS_MAX and clamp_tokens(12.7) == 12
    assert clamp_tokens(-5) == 0 and clamp_tokens("12") == 0 and clamp_tokens(None) == 0
    assert clamp_tokens(True) == 0 and clamp_tokens(float("nan")) == 0
    assert clamp_tokens(float("inf")) == TOKENS_MAX
    assert clean_model("a\x00b\nc" + "x" * 500, "req") == ("abc" + "x" * 500)[:200]
    assert clean_model("\x00\x01", "requested") == "requested"
    assert clean_model(None, "requested") == "requested" and clean_model(7, "") == ""
    assert clean_content("a\x00b\ud800c") == "ab?c" and clean_content(None) == ""
    text = snippet("key=" + API_KEY + " \x00 " + "y" * 500, API_KEY)
    assert API_KEY not in text and "\x00" not in text and len(text) == BODY_SNIPPET_CHARS


def test_observe_measures_requests_and_counts_retries(llm: FakeLLMServer) -> None:
    seen: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def meter(name: str) -> Iterator[None]:
        try:
            yield
        except ProviderError as exc:
            seen.append((name, str(exc.status_code)))
            raise
        seen.append((name, "ok"))

    llm.control(script=[500, 200])
    observe(meter, lambda name: seen.append((name, "retry")))
    try:
        asyncio.run(
            acall_with_retries(
                get_provider("openai"),
                request_for(llm),
                max_retries=2,
                backoff_base=0.01,
                backoff_max=0.02,
            )
        )
    finally:
        observe()
    assert seen == [("openai", "500"), ("openai", "retry"), ("openai", "ok")]
