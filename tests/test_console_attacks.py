"""The operator console under attack: a hostile tenant, a read-only key holder and an
outsider against the real `agentq api` (one stack, one API server for the module; real
HTTP, plus Debian's chromium for the one thing only a browser shows).

Tests marked xfail(strict=True) demonstrate a problem that is still there (the reason
says which); the others guard properties that hold today.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentq.logging import redact
from agentq.ops import keys
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.api_support import Server, api_server
from tests.conftest import stack_with
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

OPERATOR_KEY = "console-operator-" + uuid.uuid4().hex
VIEWER_KEY = "console-viewer-" + uuid.uuid4().hex
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
#: tenant B's name (tenant names are any printable text)
HOSTILE_TENANT = "<b>tenant-b</b><script>alert(3)</script>"
#: AGENTQ_FLOWER_URL's credentials (for Flower's API; never for a browser to see)
FLOWER_AUTH = "ops:flower-" + uuid.uuid4().hex[:12]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class _Flower(BaseHTTPRequestHandler):
    """Flower's `/api/task/info/<id>`: a task whose arguments are `args` (set by a test)."""

    args: str = "()"
    #: seconds it takes to answer (a Flower under load, or behind a dropped route)
    delay: float = 0.0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(_Flower.delay)
        if self.path.startswith("/api/tasks"):  # a search: one task
            found: Any = {"t-1": {"uuid": "t-1", "received": 1.0, "args": _Flower.args}}
        else:
            found = {"uuid": self.path.rsplit("/", 1)[-1], "args": _Flower.args}
        body = json.dumps(found).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class World:
    server: Server
    llm: FakeLLMServer
    key_a: str
    key_a_read: str
    key_b: str
    #: tenant A's: a conversation with a reply, its user participant, agent, job
    conv_a: str
    user_a: str
    agent_a: str
    job_a: str
    message_a: str
    #: tenant A's failed job
    failed_a: str
    conv_b: str
    agent_b: str
    #: tenant A's key listed in AGENTQ_READ_ONLY_KEYS (key_a_read is in the old name)
    key_a_read_new: str = ""

    def url(self, path: str) -> str:
        return self.server.url + path

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    @contextmanager
    def console(self, key: str) -> Iterator[httpx.Client]:
        """A console session as the login form makes it (the cookie the login sets)."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            answer = client.post("/console/login", json={"key": key})
            assert answer.status_code == 200, answer.text
            yield client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/console/agents").text
    return page.split('data-csrf="', 1)[1].split('"', 1)[0]


def _dm(http: httpx.Client, title: str = "support", user: str = "u1") -> tuple[str, str, str]:
    agent = http.post("/v1/agents", json={"name": f"bot-{uuid.uuid4().hex[:6]}"})
    assert agent.status_code == 201, agent.text
    conv = http.post(
        "/v1/conversations",
        json={"kind": "dm", "title": title, "settings": {"debounce_seconds": 0.05}},
    )
    assert conv.status_code == 201, conv.text
    cid = conv.json()["id"]
    http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent.json()["id"]})
    who = http.post(
        f"/v1/conversations/{cid}/participants", json={"user_id": user, "display_name": user}
    )
    assert who.status_code == 201, who.text
    return cid, who.json()["id"], agent.json()["id"]


def _post(http: httpx.Client, cid: str, user: str, content: str) -> str:
    answer = http.post(
        f"/v1/conversations/{cid}/messages", json={"author_id": user, "content": content}
    )
    assert answer.status_code in (201, 202), answer.text
    return str(answer.json()["message"]["id"])


def _jobs(http: httpx.Client, cid: str, status: str | None = None) -> list[dict[str, Any]]:
    params = {"conversation_id": cid, **({"status": status} if status else {})}
    return list(http.get("/v1/jobs", params=params).json()["items"])


@pytest.fixture(scope="module")
def flower() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flower)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{FLOWER_AUTH}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def world(
    base_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    restored_env: None,
    flower: str,
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console-attacks")
    with (
        FakeLLMServer(FakeLLMConfig(latency=0.02, token_delay=0.0)) as llm,
        stack_with(base_env, tmp, llm) as stack,
    ):
        stack.start_worker(concurrency=4)
        key_a, _ = keys.create_key("attack-a", "tenant-a")
        key_a_read, read_info = keys.create_key("attack-a-read", "tenant-a")
        key_a_read_new, read_new_info = keys.create_key("attack-a-read-new", "tenant-a")
        key_b, _ = keys.create_key("attack-b", HOSTILE_TENANT)
        env = {
            **stack.env,
            "AGENTQ_CONSOLE_OPERATOR_KEY": OPERATOR_KEY,
            "AGENTQ_CONSOLE_VIEWER_KEY": VIEWER_KEY,
            "AGENTQ_CONSOLE_READ_ONLY_KEYS": str(read_info.id),  # the old name still counts
            "AGENTQ_READ_ONLY_KEYS": f" {read_new_info.id} ,",
            "AGENTQ_FLOWER_URL": flower,
            "AGENTQ_API_KEY_RECHECK_SECONDS": "0.3",
            "AGENTQ_API_MAX_STREAMS_PER_TENANT": "3",
        }
        with api_server(env, tmp) as server:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key_a}"}, timeout=30
            ) as a:
                conv_a, user_a, agent_a = _dm(a, title=HOSTILE, user=HOSTILE)
                message_a = _post(a, conv_a, user_a, HOSTILE)
                done = wait_until(
                    lambda: _jobs(a, conv_a, "completed"), timeout=20, what="A's reply"
                )
                llm.control(script=["s500_noretry"] * 3)
                conv_f, user_f, _ = _dm(a, title="fails")
                _post(a, conv_f, user_f, "this one fails")
                failed = wait_until(
                    lambda: _jobs(a, conv_f, "failed"), timeout=20, what="A's failed job"
                )
                llm.reset()
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key_b}"}, timeout=30
            ) as b:
                conv_b, _, agent_b = _dm(b, title="tenant b")
            yield World(
                server,
                llm,
                key_a,
                key_a_read,
                key_b,
                conv_a,
                user_a,
                agent_a,
                done[0]["id"],
                message_a,
                failed[0]["id"],
                conv_b,
                agent_b,
                key_a_read_new=key_a_read_new,
            )


# --- tenant isolation -----------------------------------------------------------------------


def test_another_tenants_ids_answer_exactly_like_unknown_ids(world: World) -> None:
    """Tenant B, by every URL that takes an id of tenant A's: the same 404 as an id that
    does not exist (no existence oracle), and nothing of A's in any list."""
    unknown = str(uuid.uuid4())
    with world.console(world.key_b) as b:
        pairs = [
            (f"/console/conversations/{world.conv_a}", f"/console/conversations/{unknown}"),
            (
                f"/console/conversations/{world.conv_a}?before=2",
                f"/console/conversations/{unknown}?before=2",
            ),
            (f"/console/jobs/{world.job_a}", f"/console/jobs/{unknown}"),
            (f"/console/find?q={world.job_a}", f"/console/find?q={unknown}"),
            (f"/console/find?q={world.conv_a}", f"/console/find?q={unknown}"),
            (f"/console/find?q={world.message_a}", f"/console/find?q={unknown}"),
            (f"/console/find?q={world.agent_a}", f"/console/find?q={unknown}"),
            (f"/console/flower/task/{world.job_a}", f"/console/flower/task/{unknown}"),
        ]
        for theirs, nobodys in pairs:
            got, ref = b.get(theirs), b.get(nobodys)
            assert (got.status_code, got.text) == (ref.status_code, ref.text), theirs
            assert got.status_code == 404, theirs
        live = b.get(f"/console/conversations/{world.conv_a}/live")
        assert live.status_code == 404
        # filters and cursors naming A: only B's own rows
        for path in (
            f"/console/conversations?tenant={world.conv_a}",
            f"/console/conversations?agent={world.agent_a}",
            f"/console/conversations?after=9999-01-01T00:00:00%2B00:00_{'f' * 8}-{'f' * 4}-{'f' * 4}-{'f' * 4}-{'f' * 12}",
            f"/console/agents?tenant={world.agent_a}",
            "/console/failed",
        ):
            page = b.get(path)
            assert page.status_code == 200, path
            for theirs in (world.conv_a, world.agent_a, world.failed_a, world.job_a):
                assert theirs not in page.text, (path, theirs)
        assert world.conv_b in b.get("/console/conversations").text
        # acting on A's things: 404 too, and nothing changes
        token = csrf_of(b)
        headers = {"X-CSRF-Token": token}
        assert b.post(f"/console/jobs/{world.failed_a}/retry", headers=headers).status_code == 404
        assert b.post(f"/console/agents/{world.agent_a}/pause", headers=headers).status_code == 404
        every = b.post(f"/console/failed/retry-all?tenant={world.conv_a}", headers=headers)
        assert every.status_code == 200 and every.json()["retried"] == 0
    with world.api(world.key_a) as a:
        assert a.get(f"/v1/jobs/{world.failed_a}").json()["status"] == "failed"
        assert a.get(f"/v1/agents/{world.agent_a}").json()["status"] != "paused"


def test_a_tenant_never_sees_other_tenants_names_or_the_tenant_picker(world: World) -> None:
    with world.console(world.key_a) as a:
        for path in ("/console/conversations", "/console/agents", "/console/failed"):
            page = a.get(path).text
            assert 'name="tenant"' not in page and "tenant-b" not in page, path


def test_the_providers_page_shows_a_tenant_only_its_own_traffic(world: World) -> None:
    def completed(client: httpx.Client) -> int:
        """Jobs completed, over every profile's row (the first number column)."""
        page = client.get("/console/providers").text
        rows = page.split("<tr data-profile=")[1:]
        assert rows, page
        return sum(int(r.split('<td class="num">', 2)[1].split("<", 1)[0]) for r in rows)

    with world.console(world.key_a) as a, world.api(world.key_b) as b:
        before = completed(a)
        cid, user, _ = _dm(b)
        _post(b, cid, user, "tenant b talks")
        wait_until(lambda: _jobs(b, cid, "completed"), timeout=20, what="B's reply")
        assert completed(a) == before


def test_find_by_a_celery_task_id_does_not_reveal_another_tenants_job(world: World) -> None:
    _Flower.args = f"('{world.job_a}',)"  # the Celery task of tenant A's job
    try:
        with world.console(world.key_b) as b:
            task = str(uuid.uuid4())
            found = b.get(f"/console/find?q={task}")
            assert world.job_a not in found.headers.get("location", "")
            assert found.status_code == 404
    finally:
        _Flower.args = "()"


# --- roles, CSRF, sessions ------------------------------------------------------------------


def test_flower_credentials_never_reach_a_page_or_a_redirect(world: World) -> None:
    password = FLOWER_AUTH.split(":", 1)[1]
    with world.console(OPERATOR_KEY) as op:
        seen = [
            op.get("/console/conversations").text,
            op.get(f"/console/conversations/{world.conv_a}").text,
            op.get("/console/failed").text,
        ]
        to_flower = op.get(f"/console/jobs/{world.job_a}/flower")
        assert to_flower.status_code == 303
        assert to_flower.headers["location"].endswith("/task/t-1")
        seen.append(to_flower.headers["location"])
    assert "127.0.0.1" in seen[0]  # the Flower link is there, without its credentials
    for text in seen:
        assert password not in text


def test_read_only_and_viewer_keys_cannot_act_by_posting_directly(world: World) -> None:
    for key in (world.key_a_read, VIEWER_KEY):
        with world.console(key) as c:
            headers = {"X-CSRF-Token": csrf_of(c)}
            for path in (
                f"/console/jobs/{world.failed_a}/retry",
                "/console/failed/retry-all",
                f"/console/agents/{world.agent_a}/pause",
                f"/console/agents/{world.agent_a}/resume",
            ):
                refused = c.post(path, headers=headers, json={})
                assert refused.status_code == 403 and "read-only" in refused.text, (key, path)
    with world.api(world.key_a) as a:
        assert a.get(f"/v1/jobs/{world.failed_a}").json()["status"] == "failed"


#: every /v1 route that changes something: (method, path, JSON body); {agent}, {conv},
#: {user}, {failed} stand for tenant A's agent, conversation, user and failed job
ACTING_ROUTES = [
    ("POST", "/v1/agents", {"name": "made-by-reader"}),
    ("PATCH", "/v1/agents/{agent}", {"role": "changed by a reader"}),
    ("DELETE", "/v1/agents/{agent}", None),
    ("POST", "/v1/agents/{agent}/pause", None),
    ("POST", "/v1/agents/{agent}/resume", None),
    ("POST", "/v1/agents/{agent}/stop", None),
    ("POST", "/v1/agents/{agent}/start", None),
    ("POST", "/v1/conversations", {"kind": "dm", "title": "made by a reader"}),
    ("POST", "/v1/conversations/{conv}/participants", {"user_id": "r", "display_name": "r"}),
    ("POST", "/v1/conversations/{conv}/messages", {"author_id": "{user}", "content": "hi"}),
    ("POST", "/v1/conversations/{conv}/messages?wait=5", {"author_id": "{user}", "content": "x"}),
    ("POST", "/v1/jobs/{failed}/retry", None),
]


def _fill(world: World, text: str) -> str:
    return (
        text.replace("{agent}", world.agent_a)
        .replace("{conv}", world.conv_a)
        .replace("{user}", world.user_a)
        .replace("{failed}", world.failed_a)
    )


def _tenant_a_state(a: httpx.Client, world: World) -> Any:
    """What any acting route above would change, as tenant A's own key reads it."""
    agents = sorted(
        (x["id"], x["name"], x["status"], x["role"]) for x in a.get("/v1/agents").json()
    )
    return (
        agents,
        sorted(c["id"] for c in a.get("/v1/conversations", params={"limit": 500}).json()),
        len(a.get(f"/v1/conversations/{world.conv_a}/participants").json()),
        len(a.get(f"/v1/conversations/{world.conv_a}/messages").json()["items"]),
        a.get(f"/v1/jobs/{world.failed_a}").json()["status"],
    )


@pytest.mark.parametrize(
    ("method", "path", "body"), ACTING_ROUTES, ids=[f"{m} {p}" for m, p, _ in ACTING_ROUTES]
)
def test_a_read_only_key_cannot_act_through_the_api_either(
    world: World, method: str, path: str, body: dict[str, str] | None
) -> None:
    """Keys listed in AGENTQ_READ_ONLY_KEYS, or in its old name
    AGENTQ_CONSOLE_READ_ONLY_KEYS, get 403 with a problem naming why from every /v1 route
    that changes something, and nothing changes."""
    url = _fill(world, path)
    payload = {k: _fill(world, v) for k, v in body.items()} if body is not None else None
    with world.api(world.key_a) as a:
        before = _tenant_a_state(a, world)
        for key in (world.key_a_read, world.key_a_read_new):
            with world.api(key) as ro:
                refused = ro.request(method, url, json=payload)
                assert refused.status_code == 403, (key == world.key_a_read, refused.text)
                assert refused.headers["content-type"] == "application/problem+json"
                problem = refused.json()
                assert problem["type"].endswith("/read_only_key")
                assert problem["status"] == 403 and problem["title"] == "Forbidden"
                assert "read-only" in problem["detail"]
                assert "AGENTQ_READ_ONLY_KEYS" in problem["detail"]
                assert url.split("?")[0] in problem["detail"]
                assert key not in refused.text
        assert _tenant_a_state(a, world) == before


def test_a_read_only_key_is_refused_before_its_request_is_looked_at(world: World) -> None:
    """The same 403 for another tenant's ids, unknown ids and invalid bodies: a read-only
    key learns nothing from acting routes (no existence oracle, no validation)."""
    with world.api(world.key_a_read_new) as ro:
        for method, path, body in (
            ("POST", f"/v1/agents/{world.agent_b}/pause", None),
            ("POST", f"/v1/agents/{uuid.uuid4()}/pause", None),
            ("POST", f"/v1/conversations/{world.conv_b}/messages", {"content": 1}),
            ("POST", "/v1/agents", {"name": ""}),
            ("PATCH", f"/v1/agents/{world.agent_a}", {"max_concurrent_jobs": -5}),
        ):
            assert ro.request(method, path, json=body).status_code == 403, (method, path)


def test_a_read_only_key_still_reads_everything_of_its_tenant(world: World) -> None:
    with world.api(world.key_a_read_new) as ro, world.api(world.key_a_read) as old:
        for client in (ro, old):
            for path in (
                "/v1/agents",
                f"/v1/agents/{world.agent_a}",
                "/v1/conversations",
                f"/v1/conversations/{world.conv_a}",
                f"/v1/conversations/{world.conv_a}/participants",
                f"/v1/conversations/{world.conv_a}/messages",
                "/v1/jobs",
                f"/v1/jobs/{world.job_a}",
                "/v1/events",
            ):
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text)
            assert world.agent_a in client.get("/v1/agents").text
            with client.stream("GET", f"/v1/conversations/{world.conv_a}/stream") as live:
                assert live.status_code == 200
    # and in the console it may look, not act
    with world.console(world.key_a_read_new) as c:
        assert world.conv_a in c.get("/console/conversations").text
        refused = c.post(
            f"/console/agents/{world.agent_a}/pause", headers={"X-CSRF-Token": csrf_of(c)}
        )
        assert refused.status_code == 403 and "read-only" in refused.text


def test_tenant_keys_still_act_and_console_keys_are_not_api_keys(world: World) -> None:
    with world.api(world.key_a) as a:
        assert a.post(f"/v1/agents/{world.agent_a}/pause").json()["status"] == "paused"
        assert a.post(f"/v1/agents/{world.agent_a}/resume").json()["status"] != "paused"
    with world.api(world.key_b) as b:
        made = b.post("/v1/conversations", json={"kind": "dm", "title": "b acts"})
        assert made.status_code == 201, made.text
    # the console's operator and viewer keys open the console only: over /v1 they are
    # unknown keys, for reading as for acting
    for key in (OPERATOR_KEY, VIEWER_KEY):
        with world.api(key) as c:
            assert c.get("/v1/agents").status_code == 401
            assert c.post(f"/v1/agents/{world.agent_a}/pause").status_code == 401


def test_every_acting_route_of_the_api_is_guarded() -> None:
    """Each /v1 route with a method that changes something depends on `acting` (so a new
    route cannot forget it), each read does not, and the list tested above is all of
    them."""
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from agentq.api.app import create_app
    from agentq.api.auth import acting

    def calls(dependant: Dependant) -> set[Any]:
        found = {dependant.call}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    app = create_app()
    try:  # FastAPI >= 0.165 keeps included routers apart: their routes, with full paths
        from fastapi.routing import iter_route_contexts

        routes = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:
        routes = [(getattr(r, "path", ""), r) for r in app.routes]
    writes, reads = set(), set()
    for path, route in routes:
        if not isinstance(route, APIRoute) or not str(path).startswith("/v1"):
            continue
        for method in route.methods:
            (writes if method in {"POST", "PUT", "PATCH", "DELETE"} else reads).add(
                (method, path, acting in calls(route.dependant))
            )
    assert writes and all(guarded for *_, guarded in writes), writes
    assert reads and not any(guarded for *_, guarded in reads), reads
    listed = {(m, p.split("?")[0]) for m, p, _ in ACTING_ROUTES}
    names = {"{agent}": "{agent_id}", "{conv}": "{conversation_id}", "{failed}": "{job_id}"}
    for short, long in names.items():
        listed = {(m, p.replace(short, long)) for m, p in listed}
    assert listed == {(m, p) for m, p, _ in writes}


@contextmanager
def _api_settings(**env: str) -> Iterator[None]:
    """This process's API settings (`api_settings()`) with `env`, for the block."""
    from agentq.api.settings import api_settings

    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    api_settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        api_settings.cache_clear()


def test_a_read_only_list_of_anything_but_key_ids_is_refused_clearly() -> None:
    """A typo would leave a key able to act: the API refuses to start, naming the entry
    (but never a key pasted there by mistake) and what belongs there."""
    from pydantic import ValidationError

    from agentq.api.settings import ApiSettings

    key_id = uuid.uuid4()
    pasted = "aq_" + uuid.uuid4().hex + uuid.uuid4().hex
    for name, value, named in (
        ("AGENTQ_READ_ONLY_KEYS", f"{key_id}, attack-a-read", "'attack-a-read'"),
        ("AGENTQ_CONSOLE_READ_ONLY_KEYS", f"{pasted},{key_id}", "an API key itself"),
    ):
        with _api_settings(**{name: value}), pytest.raises(ValidationError) as bad:
            ApiSettings()
        text = str(bad.value)
        assert name in text and named in text and "where API key ids belong" in text, text
        assert pasted not in text
    with _api_settings(AGENTQ_READ_ONLY_KEYS=f" {str(key_id).upper()} ,"):
        assert ApiSettings().read_only(key_id) and not ApiSettings().read_only(uuid.uuid4())


def test_posts_need_this_keys_csrf_token_and_this_origin(world: World) -> None:
    with world.console(world.key_a) as a, world.console(world.key_b) as b:
        mine, theirs = csrf_of(a), csrf_of(b)
        assert mine != theirs
        path = f"/console/agents/{world.agent_a}/pause"
        for headers in (
            {},
            {"X-CSRF-Token": ""},
            {"X-CSRF-Token": theirs},
            {"X-CSRF-Token": mine[:-1]},
            {"X-CSRF-Token": mine, "Origin": "http://evil.test"},
            {"X-CSRF-Token": mine, "Origin": "null"},
        ):
            assert a.post(path, headers=headers, json={}).status_code == 403, headers
        # the token in a form field or the query string does not count either
        assert a.post(path + f"?csrf={mine}", data={"csrf": mine}).status_code in (403, 415)
        # and GETs change nothing
        for method_path in (path, f"/console/jobs/{world.failed_a}/retry"):
            assert a.get(method_path).status_code in (404, 405)
        # a cross-site login (login CSRF) is refused, as a simple form post or as JSON
        for kind in ("text/plain", "application/json"):
            forged = httpx.post(
                world.url("/console/login"),
                content=json.dumps({"key": world.key_b}),
                headers={"Origin": "http://evil.test", "Content-Type": kind},
            )
            assert forged.status_code in (403, 415) and "set-cookie" not in forged.headers


def test_the_session_cookie_is_httponly_strict_and_scoped(world: World) -> None:
    answer = httpx.post(world.url("/console/login"), json={"key": world.key_a})
    cookie = answer.headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=strict", "path=/console", "max-age="):
        assert flag in cookie
    assert "secure" not in cookie  # plain http here
    # behind a TLS proxy it trusts (uvicorn: 127.0.0.1 by default), the cookie is Secure
    proxied = httpx.post(
        world.url("/console/login"),
        json={"key": world.key_a},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "secure" in proxied.headers["set-cookie"].lower()
    # no fixation: a planted cookie is no session, and a login issues a fresh token
    planted = {"agentq_console": "planted-by-attacker"}
    assert httpx.get(world.url("/console/agents"), cookies=planted).status_code == 303
    fresh = httpx.post(world.url("/console/login"), json={"key": world.key_a}, cookies=planted)
    assert "planted-by-attacker" not in fresh.headers["set-cookie"]
    assert world.key_a not in fresh.headers["set-cookie"]  # the cookie is not the key
    for key in (world.key_a, OPERATOR_KEY):
        with world.console(key) as c:
            for path in ("/console/conversations", f"/console/conversations/{world.conv_a}"):
                page = c.get(path)
                assert key not in page.text and page.headers["x-frame-options"] == "DENY"
                assert page.headers["cache-control"] == "no-store"


def test_logging_out_ends_the_session_server_side(world: World) -> None:
    with world.console(world.key_a) as a:
        stolen = dict(a.cookies)
        a.post("/console/logout", headers={"X-CSRF-Token": csrf_of(a)})
    replay = httpx.get(world.url("/console/conversations"), cookies=stolen)
    assert replay.status_code == 303


def test_logout_needs_the_csrf_token(world: World) -> None:
    with world.console(world.key_a) as a:
        forged = a.post("/console/logout", headers={"Origin": "http://evil.test"})
        assert forged.status_code == 403


def test_a_revoked_key_stops_at_once_pages_actions_and_live_stream(world: World) -> None:
    key, info = keys.create_key("attack-a-revoked", "tenant-a")
    with world.console(key) as c:
        token = csrf_of(c)
        with c.stream("GET", f"/console/conversations/{world.conv_a}/live") as live:
            assert live.status_code == 200
            lines = live.iter_lines()
            assert next(lines).startswith("retry:")
            keys.revoke_key(info.id)
            started = time.monotonic()
            for _ in lines:  # the stream ends (key re-checked every 0.3 s here)
                pass
            assert time.monotonic() - started < 5
        assert c.get("/console/conversations").status_code == 303
        refused = c.post(f"/console/agents/{world.agent_a}/pause", headers={"X-CSRF-Token": token})
        assert refused.status_code == 401
    again = httpx.post(world.url("/console/login"), json={"key": key})
    assert again.status_code == 401


def test_failed_logins_are_limited_per_address_and_over_all(world: World) -> None:
    """Past the failed-login limit of an address, a login from there is refused before
    its key is looked at (the right key too), other addresses still log in; past the
    limit of all addresses together every login is refused: 429 with Retry-After, over
    HTTP as in `session.login`. (This process's settings and Redis: the world's
    server keeps its own limits.)"""
    from fastapi.testclient import TestClient

    from agentq.api.app import create_app
    from agentq.api.console import session
    from agentq.api.problems import TooManyAttempts

    # a window length of this test's own (its counters apart from the server's), with
    # the test well inside one window
    now = int(time.time())
    length = next(n for n in range(3601, 3700) if n - now % n > 120)
    wrong = "aq_" + "x" * 43
    with _api_settings(
        AGENTQ_CONSOLE_LOGIN_WINDOW_SECONDS=str(length),
        AGENTQ_CONSOLE_LOGIN_FAILURES_PER_CLIENT="3",
        AGENTQ_CONSOLE_LOGIN_FAILURES_TOTAL="6",
    ):
        guesser = f"198.51.100.{uuid.uuid4().int % 250}"
        for _ in range(3):
            assert session.login(wrong, guesser) is None
        with pytest.raises(TooManyAttempts) as refused:
            session.login(world.key_a, guesser)
        assert 0 < refused.value.retry_after <= length
        assert "this address" in str(refused.value)
        token = session.login(world.key_a, "203.0.113.9")  # another address: let in
        assert token is not None
        session.logout(token)
        for address in ("192.0.2.1", "192.0.2.2", None):  # 6 failures over all
            assert session.login(wrong, address) is None
        with pytest.raises(TooManyAttempts) as everyone:
            session.login(OPERATOR_KEY, "192.0.2.3")
        assert "all addresses" in str(everyone.value)
        with TestClient(create_app()) as http:
            answer = http.post("/console/login", json={"key": world.key_a})
        assert answer.status_code == 429, answer.text
        assert 0 < int(answer.headers["retry-after"]) <= length
        assert answer.headers["content-type"] == "application/problem+json"
        assert "too many failed console logins" in answer.json()["detail"]
        assert "set-cookie" not in answer.headers


# --- XSS, redirects, secrets ----------------------------------------------------------------


def test_hostile_text_is_escaped_everywhere_it_is_shown(world: World) -> None:
    """A title, a message body, a user's display name and a tenant's name made of markup
    reach the pages escaped (the list, the timeline, the operator's tenant columns)."""
    with world.console(OPERATOR_KEY) as op, world.console(world.key_a) as a:
        pages = [
            op.get("/console/conversations").text,
            op.get(f"/console/conversations/{world.conv_a}").text,
            op.get(f"/console/conversations/{world.conv_b}").text,
            op.get("/console/agents").text,
            op.get("/console/failed").text,
            a.get(f"/console/conversations/{world.conv_a}").text,
            a.get(f"/console/conversations/{world.conv_a}?fragment=1").text,
        ]
    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "<b>tenant-b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]  # shown, as text
    assert "&lt;b&gt;tenant-b&lt;/b&gt;" in pages[0]  # B's tenant name, as text


def test_login_next_never_leaves_the_console(world: World) -> None:
    for bad in (
        "//evil.test/",
        "https://evil.test/",
        "/console//evil.test",
        "/console/\\evil.test",
        "/\\evil.test",
        "javascript:alert(1)",
    ):
        answer = httpx.post(world.url("/console/login"), json={"key": world.key_a, "next": bad})
        target = answer.json()["next"]
        assert target.startswith("/console") and "//" not in target and ":" not in target, bad
        form = httpx.get(world.url("/console/login"), params={"next": bad}).text
        assert 'data-next="/console/conversations"' in form, bad


def test_the_login_form_never_puts_the_key_in_a_url(world: World) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(java_script_enabled=False)
            page = context.new_page()
            page.goto(world.url("/console/login"))
            page.fill("#key", OPERATOR_KEY)
            page.press("#key", "Enter")
            page.wait_for_load_state()
            url = page.url
        finally:
            browser.close()
    request_line = f'"GET {url.removeprefix(world.server.url)} HTTP/1.1" 200'
    assert OPERATOR_KEY not in redact(request_line)


def test_log_redaction_masks_agentq_and_console_keys(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tenant keys by their shape (`aq_` + 43 characters), the console's keys as the
    configured values they are, whatever the shape of the line they land in."""
    line = f"console login key={world.key_a} operator {OPERATOR_KEY} viewer:{VIEWER_KEY}"
    clean = redact(line, [OPERATOR_KEY, VIEWER_KEY])  # given
    assert OPERATOR_KEY not in clean and VIEWER_KEY not in clean and world.key_a not in clean
    monkeypatch.setenv("AGENTQ_CONSOLE_OPERATOR_KEY", OPERATOR_KEY)
    monkeypatch.setenv("AGENTQ_CONSOLE_VIEWER_KEY", VIEWER_KEY)
    for text in (line, json.dumps({"k": world.key_b, "o": [OPERATOR_KEY]}), world.key_a_read):
        clean = redact(text)  # from the environment
        for secret in (world.key_a, world.key_b, world.key_a_read, OPERATOR_KEY, VIEWER_KEY):
            assert secret not in clean, text
        assert "[REDACTED]" in clean
    # what `agentq keys list` shows of a key stays readable
    assert redact(f"key {world.key_a[:10]} revoked") == f"key {world.key_a[:10]} revoked"


# --- abuse ----------------------------------------------------------------------------------


def test_page_sizes_cursors_and_filters_out_of_range_are_harmless(world: World) -> None:
    junk_id = str(uuid.uuid4())
    with world.console(OPERATOR_KEY) as op:
        for path in (
            "/console/conversations?limit=1000000",
            "/console/conversations?after=garbage",
            "/console/conversations?after=_",
            f"/console/conversations?after=-1_{junk_id}",
            f"/console/conversations?after=0001-01-01T00:00:00_{junk_id}",
            "/console/conversations?tenant=" + "x" * 5000,
            "/console/conversations?agent=" + "x" * 5000 + "&state=" + "y" * 5000,
            "/console/failed?after=garbage&tenant=nope",
            f"/console/conversations/{world.conv_a}?before=-5",
            f"/console/conversations/{world.conv_a}?before=0",
        ):
            answer = op.get(path)
            assert answer.status_code in (200, 404, 422), (path, answer.status_code)
            assert answer.text.count("<tr data-conversation") <= 50
        assert op.get("/console/conversations?after=" + "x" * 101).status_code == 422
        assert op.get("/console/find?q=" + "x" * 2001).status_code == 422
        for bad in ("../settings.py", "..%2F..%2Fapi%2Fsettings.py", "console.css.bak", "x"):
            assert httpx.get(world.url(f"/console/static/{bad}")).status_code == 404


def test_cursors_at_the_edges_are_refused_clearly(world: World) -> None:
    junk_id = str(uuid.uuid4())
    with world.console(OPERATOR_KEY) as op:
        for path in (
            f"/console/conversations?after=9999-12-31T23:59:59-14:00_{junk_id}",
            f"/console/conversations?after=0001-01-01T00:00:00%2B14:00_{junk_id}",
            f"/console/failed?after=9999-12-31T23:59:59-14:00_{junk_id}",
            f"/console/conversations/{world.conv_a}?before=99999999999999999999",
        ):
            assert op.get(path).status_code < 500, path


def test_retry_all_with_a_bad_tenant_filter_is_refused(world: World) -> None:
    world.llm.control(script=["s500_noretry"] * 3)  # a retried job fails again
    try:
        with world.console(OPERATOR_KEY) as op, world.api(world.key_a) as a:
            answer = op.post(
                "/console/failed/retry-all?tenant=tenant-a",
                headers={"X-CSRF-Token": csrf_of(op)},
            )
            if answer.status_code == 200:  # A's job back as the other tests expect it
                wait_until(
                    lambda: a.get(f"/v1/jobs/{world.failed_a}").json()["status"] == "failed",
                    timeout=20,
                    what="A's job failing again",
                )
            assert answer.status_code == 422
    finally:
        world.llm.reset()


def test_live_views_are_capped_per_tenant(world: World) -> None:
    """Past AGENTQ_API_MAX_STREAMS_PER_TENANT (3 here) open live views, 429. (Each open
    stream's line iterator is kept: dropping it closes the connection.)"""
    path = f"/console/conversations/{world.conv_a}/live"
    with world.console(world.key_a) as a, ExitStack() as open_streams:
        held = []
        for _ in range(3):
            r = open_streams.enter_context(a.stream("GET", path))
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("retry:")
            held.append(lines)
        with a.stream("GET", path) as over:
            assert over.status_code == 429 and over.headers["retry-after"]


def test_a_slow_flower_does_not_stall_the_api(world: World) -> None:
    """Flower holds every tenant's tasks, so a tenant's search and a tenant's job never
    ask it (nor link to it). An operator's burst of task-id searches against a Flower that
    does not answer holds `flower.SLOTS` lookups at most: the rest answer "Flower busy"
    (503) instead of piling up, and another tenant's /v1 request answers meanwhile."""
    from agentq.api.console import flower  # the console's bound on lookups in flight

    held = threading.Event()
    lock = threading.Lock()
    asked = {"now": 0, "most": 0, "total": 0}
    answer = _Flower.do_GET

    def held_answer(handler: _Flower) -> None:  # Flower, stuck until the test lets it go
        with lock:
            asked["now"] += 1
            asked["total"] += 1
            asked["most"] = max(asked["most"], asked["now"])
        try:
            held.wait(20)
            answer(handler)
        finally:
            with lock:
                asked["now"] -= 1

    with world.console(OPERATOR_KEY) as op:
        cookies = dict(op.cookies)
    statuses: list[int] = []

    def find() -> None:
        url = world.url(f"/console/find?q={uuid.uuid4()}")
        statuses.append(httpx.get(url, cookies=cookies, timeout=30).status_code)

    burst = [threading.Thread(target=find) for _ in range(3 * flower.SLOTS)]
    busy = len(burst) - flower.SLOTS
    _Flower.do_GET = held_answer  # type: ignore[method-assign]
    try:
        with world.console(world.key_a) as a:
            assert a.get(f"/console/find?q={uuid.uuid4()}").status_code == 404
            assert a.get(f"/console/jobs/{world.job_a}/flower").status_code == 404
            page = a.get(f"/console/conversations/{world.conv_a}").text
            assert "/flower" not in page and "127.0.0.1" not in page
        assert asked["total"] == 0  # no tenant request reached Flower

        for t in burst:
            t.start()
        wait_until(lambda: asked["now"] == flower.SLOTS, timeout=10, what="Flower asked")
        with world.api(world.key_b) as b:
            assert b.get("/v1/agents").status_code == 200
        assert asked["now"] == flower.SLOTS  # answered while Flower still held them all
        wait_until(lambda: statuses.count(503) == busy, timeout=10, what="Flower busy")
    finally:
        held.set()
        _Flower.do_GET = answer  # type: ignore[method-assign]
        for t in burst:
            if t.ident is not None:  # started
                t.join()
    assert asked["most"] == flower.SLOTS
    assert sorted(statuses) == [404] * flower.SLOTS + [503] * busy


def test_the_api_log_holds_no_key_and_no_message_body(world: World) -> None:
    """Everything above went through this server: its log (warnings and errors here)
    names no key, session cookie or message body."""
    text = world.server.log.read_text()
    for secret in (world.key_a, world.key_a_read, world.key_b, OPERATOR_KEY, VIEWER_KEY):
        assert secret not in text
    assert "onerror=alert" not in text and "this one fails" not in text
