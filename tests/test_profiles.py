"""Model profiles: a hostile tenant cannot make the deployment send its keys or requests
anywhere, import anything, or hold its LLM threads; agents call their profile's endpoint
with their profile's key. Real API under uvicorn, real workers, PostgreSQL and Redis, and
a capture server that records every request it gets. Also: how profiles are declared."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from agentq import profiles
from agentq.config import reset_settings
from agentq.errors import ProfileConfigError, UnknownProfile
from agentq.providers import ChatMessage
from agentq.store.models import Agent
from agentq.store.session import transaction
from agentq.testing.fake_llm import FakeLLMServer
from agentq.turn.context import chat_request
from tests.api_support import Server, api_server, cli_create_key
from tests.conftest import apply_env, stack_with
from tests.helpers import jobs_of, wait_until
from tests.profile_support import profiles_json

FAST_KEY = "sk-fast-PROFILE-7f3a9c"
FAST_KEY_VAR = "AGENTQ_TEST_FAST_KEY"
DEFAULT_KEY = "sk-test-SECRET-0123456789"  # tests.conftest.FAST's LLM_API_KEY
#: what a provider's error body says; the health route must not repeat it
BODY_MARKER = "provider-body-marker-51c7"
MARKER_MODULE = "agentq_import_marker_3b9e"


# -- servers that record every request ---------------------------------------------------


@dataclass
class Capture:
    url: str
    seen: list[dict[str, Any]]


@contextmanager
def capture_server(status: int = 200, body: bytes = b"{}") -> Iterator[Capture]:
    """An HTTP server on 127.0.0.1 recording every request, answering `status` `body`."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": self.rfile.read(length).decode("utf-8", "replace"),
                }
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Capture(f"http://127.0.0.1:{server.server_address[1]}/v1", seen)
    finally:
        server.shutdown()
        server.server_close()


# -- the stack: API, one worker, the reconciler ------------------------------------------


@dataclass
class Env:
    api: Server
    key: str
    capture: Capture
    leaky: Capture
    fast: FakeLLMServer
    marker_file: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def deployment(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, restored_env: None
) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("profiles")
    # A module whose import would leave a file behind, importable by the API process.
    marker_file = tmp / "imported"
    (tmp / f"{MARKER_MODULE}.py").write_text(
        f"open({str(marker_file)!r}, 'w').write('imported')\n"
        "from agentq.providers import Provider\n"
        "class Steal(Provider):\n    name = 'steal'\n"
    )
    leaky_body = json.dumps({"error": {"message": f"{BODY_MARKER} internal page"}}).encode()
    with (
        FakeLLMServer(latency=0.01) as default_llm,
        FakeLLMServer(latency=0.01, api_key=FAST_KEY) as fast,
        capture_server() as capture,
        capture_server(status=401, body=leaky_body) as leaky,
        stack_with(
            base_env,
            tmp,
            default_llm,
            AGENTQ_MODEL_PROFILES=profiles_json(
                fast={"endpoint": fast.url, "api_key_env": FAST_KEY_VAR, "max_tokens": 64},
                leaky={"endpoint": leaky.url},
                tight={"timeout": 5, "max_tokens": 100, "max_concurrent_jobs": 2},
            ),
            **{FAST_KEY_VAR: FAST_KEY, "PYTHONPATH": str(tmp)},
        ) as stack,
    ):
        stack.start_worker(concurrency=4)
        stack.start_reconciler(interval=1.0)
        env = {k: v for k, v in stack.env.items() if isinstance(v, str)}
        key = cli_create_key(env)
        with api_server(env, tmp) as api:
            yield Env(api, key, capture, leaky, fast, marker_file, env)


def http_client(d: Env) -> httpx.Client:
    return httpx.Client(
        base_url=d.api.url, headers={"Authorization": f"Bearer {d.key}"}, timeout=60
    )


def agent_body(**fields: Any) -> dict[str, Any]:
    return {"name": f"a{uuid.uuid4().hex[:8]}", **fields}


def dm(http: httpx.Client, agent_id: str) -> tuple[str, str]:
    conv = http.post("/v1/conversations", json={"kind": "dm"}).json()["id"]
    http.post(f"/v1/conversations/{conv}/participants", json={"agent_id": agent_id})
    user = http.post(f"/v1/conversations/{conv}/participants", json={"user_id": "u"}).json()
    return conv, user["id"]


def ask(http: httpx.Client, conv: str, user: str, text: str) -> dict[str, Any]:
    r = http.post(
        f"/v1/conversations/{conv}/messages?wait=30", json={"author_id": user, "content": text}
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


#: (fields of POST /v1/agents, the field the 422 names, what its detail must also say)
HOSTILE: list[tuple[dict[str, Any], str, str]] = [
    ({"model_config": {"endpoint": "CAPTURE"}}, "model_config.endpoint", ""),
    ({"model_config": {"api_key_env": "AGENTQ_DATABASE_URL"}}, "model_config.api_key_env", ""),
    ({"model_config": {"api_key": "sk-mine"}}, "model_config.api_key", ""),
    ({"model_config": {"model": "gpt-expensive"}}, "model_config.model", ""),
    ({"model_config": {"provider": f"{MARKER_MODULE}:Steal"}}, "model_config.provider", ""),
    ({"model_config": {"base_url": "CAPTURE"}}, "model_config.base_url", ""),
    ({"model_config": {"max_tokens_param": "max_tokens"}}, "model_config.max_tokens_param", ""),
    ({"provider": f"{MARKER_MODULE}:Steal"}, "provider", "import paths are not accepted"),
    ({"provider": f"{MARKER_MODULE}.Steal"}, "provider", "import paths are not accepted"),
    ({"provider": "anthropic"}, "provider", "not the provider of model profile 'default'"),
    ({"model_config": {"timeout": 1e9}}, "model_config.timeout", "at most 30 seconds"),
    ({"model_config": {"max_tokens": 10**9}}, "model_config.max_tokens", "between 1 and 1024"),
    ({"model_config": {"temperature": 3}}, "model_config.temperature", "2"),
    (
        {"model_config": {"profile": "tight", "timeout": 6}},
        "model_config.timeout",
        "at most 5 seconds (profile tight)",
    ),
    (
        {"model_config": {"profile": "nope"}},
        "model_config.profile",
        # (other tests of the session declare profiles of their own in the same file)
        "unknown model profile 'nope'; known: default, fast",
    ),
    ({"max_concurrent_jobs": 10_000}, "max_concurrent_jobs", "between 1 and 100"),
    (
        {"model_config": {"profile": "tight"}, "max_concurrent_jobs": 3},
        "max_concurrent_jobs",
        "between 1 and 2 (profile tight)",
    ),
    ({"rate_limit_per_minute": 1_000_001}, "rate_limit_per_minute", "between 1 and 1000000"),
]


def _fill(value: Any, capture: Capture) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, capture) for k, v in value.items()}
    return capture.url if value == "CAPTURE" else value


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fields", "field", "says"), HOSTILE, ids=[f"{h[1]}-{i}" for i, h in enumerate(HOSTILE)]
)
def test_hostile_agent_fields_are_refused_naming_the_field(
    deployment: Env, fields: dict[str, Any], field: str, says: str
) -> None:
    with http_client(deployment) as http:
        r = http.post("/v1/agents", json=agent_body(**_fill(fields, deployment.capture)))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == field, problem
    assert field in problem["detail"] and says in problem["detail"], problem


@pytest.mark.integration
def test_nothing_reaches_the_capture_server_nor_is_imported(deployment: Env) -> None:
    d = deployment
    with http_client(d) as http:
        for fields, _, _ in HOSTILE:
            assert http.post("/v1/agents", json=agent_body(**_fill(fields, d.capture))).status_code
        # A legitimate agent works, through the workers, and its health is checked.
        agent = http.post("/v1/agents", json=agent_body()).json()
        conv, user = dm(http, agent["id"])
        answered = ask(http, conv, user, "hello")
        assert answered["reply"] is not None, answered
        health = http.get(f"/v1/agents/{agent['id']}/health").json()
        assert health["ok"] is True and health["profile"] == "default"
        assert set(health) == {
            "agent",
            "profile",
            "provider",
            "ok",
            "latency_ms",
            "error",
            "status_code",
            "age_seconds",  # the report is shared by every caller for 30 s
        }
    assert d.capture.seen == []
    assert not d.marker_file.exists(), "the API imported a module named by a caller"


@pytest.mark.integration
def test_health_reports_status_and_never_the_provider_body(deployment: Env) -> None:
    d = deployment
    with http_client(d) as http:
        agent = http.post("/v1/agents", json=agent_body(model_config={"profile": "leaky"}))
        assert agent.status_code == 201, agent.text
        r = http.get(f"/v1/agents/{agent.json()['id']}/health")
    assert r.status_code == 200
    report = r.json()
    assert report["ok"] is False and report["status_code"] == 401
    assert report["profile"] == "leaky" and report["error"] == "ProviderError"
    assert d.leaky.seen, "the check did call the leaky profile's endpoint"
    host = d.leaky.url.split("//")[1].split("/")[0]
    assert BODY_MARKER not in r.text and host not in r.text and "internal" not in r.text


@pytest.mark.integration
def test_agent_on_profile_fast_calls_its_endpoint_with_its_key(deployment: Env) -> None:
    d = deployment
    before = d.fast.stats()["completed"]
    with http_client(d) as http:
        created = http.post(
            "/v1/agents",
            json=agent_body(model_config={"profile": "fast", "max_tokens": 32, "temperature": 0.5}),
        )
        assert created.status_code == 201, created.text
        agent = created.json()
        assert agent["provider"] == "openai"
        stored = agent.get("model_config", agent.get("model_config_"))  # (AgentOut's name)
        assert stored == {"profile": "fast", "max_tokens": 32, "temperature": 0.5}
        conv, user = dm(http, agent["id"])
        answered = ask(http, conv, user, "fast one")
    # The fast server checks the key: only FAST_KEY (never LLM_API_KEY) gets an answer.
    assert answered["reply"]["content"] == "reply to: fast one", answered
    stats = d.fast.stats()
    assert stats["completed"] == before + 1
    assert stats["last_body"]["max_completion_tokens"] == 32
    assert stats["last_body"]["temperature"] == 0.5


@pytest.mark.integration
def test_stored_old_keys_are_ignored_and_an_unknown_profile_fails_the_job(
    deployment: Env,
) -> None:
    """Agents stored before profiles (endpoint, api_key_env in model_config) or on a
    profile since removed: the old keys are ignored; the unknown profile fails the job
    without retries, saying why."""
    d = deployment
    with http_client(d) as http:
        old = http.post("/v1/agents", json=agent_body()).json()
        gone = http.post("/v1/agents", json=agent_body()).json()
        apply_env(d.env)
        with transaction() as tx:
            tx.execute(
                update(Agent)
                .where(Agent.id == uuid.UUID(old["id"]))
                .values(
                    model_config_={
                        "endpoint": d.capture.url,
                        "api_key_env": "AGENTQ_DATABASE_URL",
                        "model": "stolen",
                    }
                )
            )
            tx.execute(
                update(Agent)
                .where(Agent.id == uuid.UUID(gone["id"]))
                .values(model_config_={"profile": "retired"})
            )
        conv, user = dm(http, old["id"])
        assert ask(http, conv, user, "old")["reply"]["content"] == "reply to: old"
        conv2, user2 = dm(http, gone["id"])
        http.post(f"/v1/conversations/{conv2}/messages", json={"author_id": user2, "content": "x"})
        (job,) = wait_until(
            lambda: [j for j in jobs_of(uuid.UUID(conv2)) if j.status == "failed"], timeout=30
        )
        assert job.attempts == 1
        assert "model profile 'retired' is not declared" in (job.failure_reason or "")
    assert d.capture.seen == []


# -- declaring profiles ----------------------------------------------------------------


@pytest.fixture
def fresh_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("AGENTQ_MODEL_PROFILES", raising=False)
    monkeypatch.delenv("AGENTQ_MODEL_PROFILES_FILE", raising=False)
    monkeypatch.setenv("LLM_ENDPOINT", "http://llm.internal:8000/v1")
    monkeypatch.setenv("LLM_MODEL", "base-model")
    reset_settings()
    yield monkeypatch
    monkeypatch.undo()
    reset_settings()


def _declare(mp: pytest.MonkeyPatch, value: str) -> None:
    mp.setenv("AGENTQ_MODEL_PROFILES", value)
    reset_settings()


def test_default_profile_is_the_llm_settings(fresh_env: pytest.MonkeyPatch) -> None:
    found = profiles.all()
    assert list(found) == ["default"]
    default = profiles.get("default")
    assert default.endpoint == "http://llm.internal:8000/v1" and default.model == "base-model"
    assert default.api_key_env == "LLM_API_KEY"
    assert (default.max_concurrent_jobs, default.rate_limit_per_minute) == (10, 600)
    with pytest.raises(UnknownProfile, match="known: default"):
        profiles.get("other")


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ('{"fast": ', "AGENTQ_MODEL_PROFILES: invalid JSON"),
        ('["fast"]', "must be an object of profile name -> fields"),
        ('{"fast": {"endpont": "http://x/v1"}}', "profile 'fast': endpont: Extra inputs"),
        ('{"fast": {"timeout": NaN}}', "NaN is not a number"),
        ('{"fast": {"timeout": 0}}', "profile 'fast': timeout"),
        ('{"fast": {"endpoint": "file:///etc/passwd"}}', "profile 'fast': endpoint"),
        ('{"fast": {"provider": "nope"}}', "profile 'fast': provider: .*unknown provider"),
        ('{"fast": {"api_key_env": "sk-123 456"}}', "profile 'fast': api_key_env"),
        ('{"fast": {"max_tokens_param": "tokens"}}', "profile 'fast': max_tokens_param"),
        ('{"bad name": {}}', "profile 'bad name': name"),
    ],
)
def test_invalid_declarations_name_the_profile_and_field(
    fresh_env: pytest.MonkeyPatch, declared: str, message: str
) -> None:
    _declare(fresh_env, declared)
    with pytest.raises(ProfileConfigError, match=message):
        profiles.all()


def test_profiles_file_toml_and_json_and_reload(
    fresh_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toml = tmp_path / "profiles.toml"
    toml.write_text(
        '[fast]\nendpoint = "https://fast.example/v1/"\napi_key_env = "FAST_KEY"\n'
        'max_tokens = 256\n\n[plugin]\nprovider = "my_pkg.llm:Provider"\n'
    )
    fresh_env.setenv("AGENTQ_MODEL_PROFILES_FILE", str(toml))
    _declare(fresh_env, json.dumps({"cheap": {"provider": "echo", "timeout": 3}}))
    found = profiles.all()
    assert list(found) == ["cheap", "default", "fast", "plugin"]
    fast = found["fast"]
    assert fast.endpoint == "https://fast.example/v1" and fast.host == "fast.example"
    assert fast.model == "base-model" and fast.max_tokens == 256
    # an operator's import path is kept as declared, and nothing is imported
    assert found["plugin"].provider == "my_pkg.llm:Provider"
    assert "my_pkg" not in __import__("sys").modules
    # declared twice: an error naming it
    _declare(fresh_env, json.dumps({"fast": {}}))
    with pytest.raises(
        ProfileConfigError, match="'fast' is declared in AGENTQ_MODEL_PROFILES_FILE"
    ):
        profiles.all()
    # a JSON file, re-read when it changes; an invalid rewrite keeps the last good ones
    _declare(fresh_env, "")
    as_json = tmp_path / "profiles.json"
    as_json.write_text(json.dumps({"one": {"model": "m1"}}))
    fresh_env.setenv("AGENTQ_MODEL_PROFILES_FILE", str(as_json))
    reset_settings()
    assert profiles.get("one").model == "m1"
    as_json.write_text(json.dumps({"one": {"model": "m1"}, "two": {"model": "m2"}}))
    assert profiles.get("two").model == "m2"
    as_json.write_text("{oops")
    assert profiles.get("two").model == "m2"
    reset_settings()
    with pytest.raises(ProfileConfigError, match="invalid .json"):
        profiles.all()


def test_chat_request_takes_everything_but_bounded_parameters_from_the_profile(
    fresh_env: pytest.MonkeyPatch,
) -> None:
    fresh_env.setenv("FAST_KEY", "sk-fast")
    fresh_env.setenv("LLM_API_KEY", "sk-default")
    _declare(
        fresh_env,
        json.dumps(
            {
                "fast": {
                    "endpoint": "http://fast/v1",
                    "api_key_env": "FAST_KEY",
                    "model": "fm",
                    "max_tokens": 100,
                    "timeout": 7,
                    "max_tokens_param": "max_tokens",
                }
            }
        ),
    )
    msgs = [ChatMessage("user", "hi")]
    stored = {
        "profile": "fast",
        "max_tokens": 5000,  # over today's cap: clamped
        "temperature": 9,
        "timeout": 1e9,
        "endpoint": "http://attacker/v1",  # keys of older versions: ignored
        "api_key_env": "AGENTQ_DATABASE_URL",
        "model": "stolen",
    }
    r = chat_request(stored, msgs)
    assert (r.endpoint, r.model, r.api_key) == ("http://fast/v1", "fm", "sk-fast")
    assert (r.max_tokens, r.temperature, r.timeout) == (100, 2.0, 7.0)
    assert r.token_param == "max_tokens"
    d = chat_request({"endpoint": "http://attacker/v1", "temperature": float("nan")}, msgs)
    assert (d.endpoint, d.api_key, d.temperature) == (
        "http://llm.internal:8000/v1",
        "sk-default",
        None,
    )
    with pytest.raises(UnknownProfile, match="'gone'"):
        chat_request({"profile": "gone"}, msgs)


def test_models_list_shows_hosts_and_caps_never_keys(fresh_env: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from agentq.cli import app

    fresh_env.setenv("FAST_KEY", "sk-never-shown-1234")
    fresh_env.setenv("LLM_API_KEY", "sk-default-never-shown")
    _declare(
        fresh_env,
        json.dumps(
            {
                "fast": {
                    "endpoint": "https://user:pw@fast.example:8443/v1/secret-path",
                    "api_key_env": "FAST_KEY",
                    "max_concurrent_jobs": 3,
                }
            }
        ),
    )
    for args in (["models", "list"], ["models", "list", "--json"]):
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 0, out.output
        assert "fast.example:8443" in out.output and "llm.internal:8000" in out.output
        for hidden in ("sk-never-shown", "sk-default", "pw", "secret-path"):
            assert hidden not in out.output
    _declare(fresh_env, '{"fast": {"timeout": -1}}')
    out = CliRunner().invoke(app, ["models", "list"])
    assert out.exit_code == 2 and "profile 'fast': timeout" in out.output
