"""An adversarial review of three security changes: read-only API keys over /v1 (and in
the console), log redaction, and the console's failed-login limit. Real HTTP against the
real `agentq api` (one server for the module, no worker: nothing here needs a job run),
plus `agentq.logging.redact` called directly.

Tests marked xfail(strict=True) demonstrate a problem still there (the reason says which
and how to fix it); the others guard what held under attack.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis as redis_lib
from starlette.routing import Route

from agentq import logging as agentq_logging
from agentq.logging import redact
from agentq.ops import keys
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.api_support import Server, api_server
from tests.conftest import stack_with

pytestmark = pytest.mark.integration

OPERATOR_KEY = "review-operator-" + uuid.uuid4().hex
VIEWER_KEY = "review-viewer-" + uuid.uuid4().hex
#: the server's failed-login limits (small, so that a test reaches them in a few requests)
PER_CLIENT, TOTAL = 3, 8


@dataclass
class World:
    server: Server
    llm: FakeLLMServer
    redis_url: str
    key: str
    key_read: str
    agent: str
    conv: str
    user: str

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        """A client whose connections come from `source` (any 127/8 address works on
        Linux loopback): an address of its own, as the server sees it."""
        return httpx.Client(
            base_url=self.server.url,
            timeout=30,
            transport=httpx.HTTPTransport(local_address=source),
        )

    def forget_failed_logins(self) -> None:
        """Zero the failed-login counters (this module's own Redis)."""
        r = redis_lib.Redis.from_url(self.redis_url)
        for name in r.scan_iter(match="*login-failures*"):
            r.delete(name)


@pytest.fixture(scope="module")
def world(
    base_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    restored_env: None,
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("security-review")
    with (
        FakeLLMServer(FakeLLMConfig(latency=0.0, token_delay=0.0)) as llm,
        stack_with(base_env, tmp, llm) as stack,
    ):
        key, _ = keys.create_key("review", "review-tenant")
        key_read, read_info = keys.create_key("review-read", "review-tenant")
        env = {
            **stack.env,
            "AGENTQ_CONSOLE_OPERATOR_KEY": OPERATOR_KEY,
            "AGENTQ_CONSOLE_VIEWER_KEY": VIEWER_KEY,
            "AGENTQ_READ_ONLY_KEYS": str(read_info.id),
            "AGENTQ_CONSOLE_LOGIN_FAILURES_PER_CLIENT": str(PER_CLIENT),
            "AGENTQ_CONSOLE_LOGIN_FAILURES_TOTAL": str(TOTAL),
        }
        with (
            api_server(env, tmp) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as a,
        ):
            agent = a.post("/v1/agents", json={"name": "review-bot"})
            assert agent.status_code == 201, agent.text
            conv = a.post("/v1/conversations", json={"kind": "dm", "title": "review"})
            assert conv.status_code == 201, conv.text
            user = a.post(
                f"/v1/conversations/{conv.json()['id']}/participants",
                json={"user_id": "u1", "display_name": "u1"},
            )
            assert user.status_code == 201, user.text
            yield World(
                server,
                llm,
                stack.env["AGENTQ_REDIS_URL"],
                key,
                key_read,
                agent.json()["id"],
                conv.json()["id"],
                user.json()["id"],
            )


def _state(world: World) -> Any:
    with world.api(world.key) as a:
        return (
            a.get("/v1/agents").json(),
            a.get("/v1/conversations").json(),
            a.get(f"/v1/conversations/{world.conv}/messages").json(),
        )


# --- read-only keys over /v1 ----------------------------------------------------------------


def test_a_read_only_key_finds_no_side_door_to_an_acting_route(world: World) -> None:
    """Trailing slashes, doubled slashes, dot segments, method overrides, HEAD and OPTIONS,
    an upper-case prefix: none reaches an acting handler for a read-only key, and an
    Idempotency-Key replay of a message the tenant's full key posted answers 403, not
    the stored message."""
    agent, conv = world.agent, world.conv
    body = {"author_id": world.user, "content": "posted once"}
    with world.api(world.key) as a:
        first = a.post(
            f"/v1/conversations/{conv}/messages", json=body, headers={"Idempotency-Key": "k1"}
        )
        assert first.status_code == 201, first.text
    before = _state(world)
    tries: list[tuple[str, str, dict[str, str], Any]] = [
        ("POST", "/v1/agents/", {}, {"name": "slash"}),
        ("POST", "//v1/agents", {}, {"name": "double"}),
        ("POST", "/v1/./agents", {}, {"name": "dot"}),
        ("POST", "/v1/x/../agents", {}, {"name": "dotdot"}),
        ("POST", "/V1/agents", {}, {"name": "upper"}),
        ("POST", f"/v1/agents/{agent}/pause/", {}, None),
        ("POST", f"/v1/agents/{agent}%2Fpause", {}, None),
        ("GET", f"/v1/agents/{agent}/pause", {"X-HTTP-Method-Override": "POST"}, None),
        ("POST", f"/v1/agents/{agent}", {"X-HTTP-Method-Override": "DELETE"}, None),
        ("HEAD", f"/v1/agents/{agent}/pause", {}, None),
        ("OPTIONS", f"/v1/agents/{agent}/pause", {}, None),
        ("OPTIONS", "/v1/agents", {}, {"name": "options"}),
        ("PUT", f"/v1/agents/{agent}", {}, {"role": "put"}),
        ("POST", f"/v1/conversations/{conv}/messages", {"Idempotency-Key": "k1"}, body),
    ]
    with world.api(world.key_read) as reader:
        for method, path, headers, payload in tries:
            answer = reader.request(method, path, headers=headers, json=payload)
            if answer.status_code in (307, 308):  # a redirect goes to the guarded route
                answer = reader.request(
                    method, answer.headers["location"], headers=headers, json=payload
                )
            assert answer.status_code in (403, 404, 405), (method, path, answer.status_code)
            assert "posted once" not in answer.text, (method, path)
            assert answer.headers.get("idempotent-replayed") is None
    assert _state(world) == before


def test_every_console_action_refuses_viewer_and_read_only_sessions(world: World) -> None:
    """A walk over the console's POST routes (login and logout aside): the viewer's and a
    read-only key's sessions, with their CSRF tokens, are refused 403 on each; the
    operator's session gets past the same check (so the walk can fail)."""
    from agentq.api.console.routes import router

    try:  # FastAPI >= 0.165 keeps included routers apart: their routes, with full paths
        from fastapi.routing import iter_route_contexts

        routes = [(str(c.path), c.original_route) for c in iter_route_contexts(router.routes)]
    except ImportError:
        routes = [(getattr(r, "path", ""), r) for r in router.routes]
    actions = [
        path
        for path, r in routes
        if isinstance(r, Route)
        and "POST" in (r.methods or ())
        and path not in ("/console/login", "/console/logout")
    ]
    assert len(actions) >= 3, actions

    def concrete(path: str, command: str) -> str:
        return (
            path.replace("{agent_id}", world.agent)
            .replace("{command}", command)
            .replace("{job_id}", str(uuid.uuid4()))
        )

    def session(key: str) -> tuple[httpx.Client, dict[str, str]]:
        c = world.client()
        assert c.post("/console/login", json={"key": key}).status_code == 200
        page = c.get("/console/agents").text
        return c, {"X-CSRF-Token": page.split('data-csrf="', 1)[1].split('"', 1)[0]}

    world.forget_failed_logins()
    before = _state(world)
    for key in (VIEWER_KEY, world.key_read):
        c, headers = session(key)
        try:
            for path in actions:
                for command in ("pause", "resume"):
                    answer = c.post(concrete(path, command), headers=headers, json={})
                    assert answer.status_code == 403, (key[:12], path, answer.text)
        finally:
            c.close()
    assert _state(world) == before
    c, headers = session(OPERATOR_KEY)
    try:
        for command in ("pause", "resume"):
            path = concrete("/console/agents/{agent_id}/{command}", command)
            assert c.post(path, headers=headers, json={}).status_code == 200
    finally:
        c.close()


def test_a_read_only_key_cannot_spend_provider_calls_without_limit(world: World) -> None:
    world.llm.reset_stats()
    with world.api(world.key_read) as reader:
        for _ in range(20):
            answer = reader.get(f"/v1/agents/{world.agent}/health")
            assert answer.status_code in (200, 429), answer.text
    calls = world.llm.stats()["requests"]
    assert calls <= 5, f"20 health checks within seconds made {calls} provider calls"


# --- the console's failed-login limit -------------------------------------------------------


def test_one_outsiders_address_cannot_lock_the_operator_out(world: World) -> None:
    world.forget_failed_logins()
    try:
        with world.client("127.0.0.2") as outsider:
            for _ in range(TOTAL + 4):
                answer = outsider.post("/console/login", json={"key": "aq_" + "g" * 43})
                assert answer.status_code in (401, 429), answer.text
        with world.client("127.0.0.3") as operator:
            answer = operator.post("/console/login", json={"key": OPERATOR_KEY})
        assert answer.status_code == 200, (answer.status_code, answer.headers, answer.text)
    finally:
        world.forget_failed_logins()


def test_the_per_address_limit_applies_over_http(world: World) -> None:
    world.forget_failed_logins()
    try:
        with world.client("127.0.0.4") as guesser:
            codes = [
                guesser.post("/console/login", json={"key": f"guess-{n}-xxxxxxxx"}).status_code
                for n in range(PER_CLIENT + 1)
            ]
        assert codes == [401] * PER_CLIENT + [429], codes
    finally:
        world.forget_failed_logins()


def test_the_global_limit_answers_429_with_a_retry_after_within_the_window(
    world: World,
) -> None:
    """Past the limit: 429 problem+json, Retry-After in (0, window], no cookie; refused
    attempts are not counted, so the count stays at the limit."""
    world.forget_failed_logins()
    try:
        codes = []
        for n in range(TOTAL + 1):  # one failure an address: only the global limit is hit
            with world.client(f"127.0.1.{10 + n}") as guesser:
                codes.append(guesser.post("/console/login", json={"key": "wrong-key-xxxxxx"}))
        assert [c.status_code for c in codes] == [401] * TOTAL + [429]
        refused = codes[-1]
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert refused.headers["content-type"] == "application/problem+json"
        assert "set-cookie" not in refused.headers
        r = redis_lib.Redis.from_url(world.redis_url)
        everyone = re.compile(rb"login-failures:\d+s-\d+$")
        counts = [int(r.get(n) or 0) for n in r.scan_iter(match="*") if everyone.search(n)]
        assert counts == [TOTAL], counts
        assert all(0 < r.ttl(n) <= 120 for n in r.scan_iter(match="*login-failures*"))
    finally:
        world.forget_failed_logins()


def test_a_key_that_is_not_utf8_is_a_client_error(world: World) -> None:
    with world.client() as outsider:
        answer = outsider.post(
            "/console/login",
            content=b'{"key": "\\ud800review-guess"}',
            headers={"Content-Type": "application/json"},
        )
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)


# --- log redaction ---------------------------------------------------------------------------


def test_agentq_keys_are_masked_after_escapes_and_percent_encoding() -> None:
    """An `aq_` key right after an escape (repr, JSON) or a `%XX` (a URL-encoded query) is masked."""
    key = "aq_" + secrets.token_urlsafe(32)
    shapes = {
        "repr": repr({"body": "hello\n" + key}),
        "json": json.dumps({"body": "hello\t" + key}),
        "url": f"GET /v1/conversations?q=%3D{key}&r=%20{key}",
    }
    leaked = {name for name, text in shapes.items() if key in redact(text)}
    assert not leaked, leaked


def test_escaped_forms_of_a_configured_secret_are_masked() -> None:
    """A configured secret is masked in its repr(), JSON and URL-encoded forms too."""
    import urllib.parse

    value = 'Op"er\\ator+/é-' + secrets.token_hex(8)
    agentq_logging.add_secrets(value)
    forms = {
        "repr": repr(value)[1:-1],
        "json": json.dumps(value)[1:-1],
        "url": urllib.parse.quote(value, safe=""),
    }
    leaked = {name for name, form in forms.items() if form in redact(f"seen: {form} .")}
    assert not leaked, leaked


def test_a_profile_key_under_any_variable_name_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model profile's key is masked whatever its variable is named (api_key() registers it)."""
    from agentq.profiles import ModelProfile

    value = "gsk" + secrets.token_hex(16)
    monkeypatch.setenv("REVIEW_GROQ_APIKEY", value)
    profile = ModelProfile(
        name="review-groq",
        provider="openai",
        endpoint="https://llm.example",
        api_key_env="REVIEW_GROQ_APIKEY",
        model="m",
        max_tokens=10,
        timeout=5,
    )
    assert profile.api_key() == value  # read as a call would
    assert value not in redact(f"provider said: bad key {value}")


def test_a_console_key_the_api_accepts_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console key short enough to escape masking (and be guessed) is refused at start."""
    from pydantic import ValidationError

    from agentq.api.settings import ApiSettings

    monkeypatch.setenv("AGENTQ_CONSOLE_OPERATOR_KEY", "Hnt3r!7")
    try:
        settings = ApiSettings(_env_file=None)  # type: ignore[call-arg]
    except ValidationError as exc:
        assert "AGENTQ_CONSOLE_OPERATOR_KEY" in str(exc) or "console_operator_key" in str(exc)
        return
    agentq_logging.add_secrets(*settings.secrets())
    monkeypatch.delenv("AGENTQ_CONSOLE_OPERATOR_KEY")  # only the registered value counts
    assert "Hnt3r!7" not in redact("login with Hnt3r!7 failed")


def test_a_url_password_with_an_at_sign_is_masked_whole() -> None:
    """A URL password holding an unencoded `@` is masked up to the authority's last `@`."""
    from urllib.parse import urlsplit

    url = "redis://:p@ss-" + secrets.token_hex(6) + "@redis.internal:6379/0"
    password = urlsplit(url).password
    assert password is not None and "@" in password
    clean = redact(f"connecting to {url}")
    assert password.split("@", 1)[1] not in clean, clean


def test_console_session_and_csrf_tokens_are_masked() -> None:
    """The console's session cookie and CSRF token are masked in a logged headers dict."""
    session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    line = f"headers: {{'Cookie': 'agentq_console={session}', 'X-CSRF-Token': '{csrf}'}}"
    clean = redact(line)
    assert session not in clean and csrf not in clean, clean


def test_a_secret_variable_added_as_another_goes_is_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `*_TOKEN` variable added while another goes (same count) is masked."""
    monkeypatch.setenv("REVIEW_PLAIN_SETTING", "x")
    redact("warm the cache")  # the names are read with REVIEW_PLAIN_SETTING there
    monkeypatch.delenv("REVIEW_PLAIN_SETTING")
    value = "review-token-" + secrets.token_hex(8)
    monkeypatch.setenv("REVIEW_SWAPPED_TOKEN", value)
    assert value not in redact(f"got {value}")
