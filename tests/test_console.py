"""The operator console in a real headless Chromium (Debian's `chromium`, driven by
playwright's sync API through `executable_path`; no browser download): one stack, one
API server and one browser for the module.

Each test logs in through the login form as a user would, then checks what the pages
show and that the console's actions take effect in the queue.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentq.ops import keys
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.api_support import Server, api_server, free_port
from tests.conftest import stack_with
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)

OPERATOR_KEY = "console-operator-" + uuid.uuid4().hex
FLOWER_AUTH = ("ops", "console-flower-pw")
VIEWER_KEY = "console-viewer-" + uuid.uuid4().hex
#: long enough that the reply streams for a second or so
QUESTION = " ".join(f"word{i}" for i in range(30))


@dataclass
class Console:
    server: Server
    llm: FakeLLMServer
    browser: Any
    key_a: str
    key_a_read: str
    key_b: str
    env: dict[str, str]
    flower_port: int
    logs: Path

    def http(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    @contextmanager
    def session(self, key: str) -> Iterator[httpx.Client]:
        """A console session as the login form opens it (the cookie it sets)."""
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            answer = client.post("/console/login", json={"key": key})
            assert answer.status_code == 200, answer.text
            yield client

    def page(self, key: str) -> Any:
        """A fresh browser context logged in with `key` through the login form."""
        context = self.browser.new_context()
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{self.server.url}/console/conversations")
        assert "/console/login" in page.url
        page.fill("#key", key)
        page.click("#login button[type=submit]")
        page.wait_for_url(re.compile(r".*/console/conversations$"))
        return page


@pytest.fixture(scope="module")
def console(
    base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, restored_env: None
) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    with (
        FakeLLMServer(FakeLLMConfig(latency=0.05, token_delay=0.01)) as llm,
        stack_with(base_env, tmp, llm) as stack,
    ):
        stack.start_worker(concurrency=4)
        key_a, _ = keys.create_key("console-a", "tenant-a")
        key_a_read, read_info = keys.create_key("console-a-read", "tenant-a")
        key_b, _ = keys.create_key("console-b", "tenant-b")
        flower_port = free_port()
        env = {
            **stack.env,
            "AGENTQ_CONSOLE_OPERATOR_KEY": OPERATOR_KEY,
            "AGENTQ_CONSOLE_VIEWER_KEY": VIEWER_KEY,
            "AGENTQ_CONSOLE_READ_ONLY_KEYS": str(read_info.id),
            "AGENTQ_API_MAX_STREAMS_PER_TENANT": "3",
            "AGENTQ_FLOWER_URL": f"http://{FLOWER_AUTH[0]}:{FLOWER_AUTH[1]}@127.0.0.1:{flower_port}",
        }
        with (
            api_server(env, tmp) as server,
            sync_api.sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield Console(server, llm, browser, key_a, key_a_read, key_b, env, flower_port, tmp)
            finally:
                browser.close()


def dm(http: httpx.Client, *, debounce: float = 0.1) -> tuple[str, str, str]:
    """(conversation id, user participant id, agent id) of a new DM over the API."""
    agent = http.post("/v1/agents", json={"name": f"bot-{uuid.uuid4().hex[:6]}"})
    assert agent.status_code == 201, agent.text
    conv = http.post(
        "/v1/conversations",
        json={
            "kind": "dm",
            "title": f"support {uuid.uuid4().hex[:4]}",
            "settings": {"debounce_seconds": debounce, "max_wait_seconds": 1},
        },
    )
    assert conv.status_code == 201, conv.text
    cid = conv.json()["id"]
    http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent.json()["id"]})
    user = http.post(f"/v1/conversations/{cid}/participants", json={"user_id": "u1"})
    return cid, user.json()["id"], agent.json()["id"]


def post(http: httpx.Client, cid: str, user: str, content: str) -> None:
    answer = http.post(
        f"/v1/conversations/{cid}/messages", json={"author_id": user, "content": content}
    )
    assert answer.status_code in (201, 202), answer.text


def replies(http: httpx.Client, cid: str) -> list[dict[str, Any]]:
    items = http.get(f"/v1/conversations/{cid}/messages?after_seq=0").json()["items"]
    return [m for m in items if m["role"] == "assistant"]


def test_a_posted_conversation_is_listed_and_its_timeline_shows_the_job_split_and_reply(
    console: Console,
) -> None:
    with console.http(console.key_a) as http:
        cid, user, _ = dm(http)
        post(http, cid, user, "hello console")
        page = console.page(console.key_a)
        row = page.locator(f"tr[data-conversation='{cid}']")
        row.wait_for(timeout=10_000)  # the list refreshes itself
        wait_until(lambda: replies(http, cid), timeout=20, what="the reply")
        row.locator("a").first.click()
        page.wait_for_url(f"**/console/conversations/{cid}")
        job = page.locator("li.job[data-status='completed']")
        job.wait_for(timeout=10_000)
        legend = job.locator(".legend").inner_text()
        for part in ("debounce", "queue", "llm", "completion"):
            assert part in legend
        assert job.locator(".bar .seg").count() == 4
        reply = page.locator("li.msg.role-assistant .body").inner_text()
        assert reply == replies(http, cid)[0]["content"]
        assert "hello console" in page.locator("li.msg.role-user .body").inner_text()
        assert job.locator(".holder").count() == 0  # workers' names are for operators
        page.context.close()
        # the operator sees which worker process held the job's lease ("hostname/pid")
        op = console.page(OPERATOR_KEY)
        op.goto(f"{console.server.url}/console/conversations/{cid}")
        holder = op.locator("li.job[data-status='completed'] .holder").inner_text()
        assert re.fullmatch(r"by \S+/\d+", holder), holder
        op.context.close()


def test_a_streaming_reply_shows_its_tokens_live(console: Console) -> None:
    console.llm.control(token_delay=0.04)
    try:
        with console.http(console.key_a) as http:
            cid, user, _ = dm(http)
            page = console.page(console.key_a)
            page.goto(f"{console.server.url}/console/conversations/{cid}")
            post(http, cid, user, QUESTION)
            text = page.locator("#writing-text")
            page.wait_for_function(
                "document.getElementById('writing-text').textContent.length > 10", timeout=15_000
            )
            seen = text.inner_text()
            assert not page.locator("#writing").is_hidden()
            reply = wait_until(lambda: replies(http, cid), timeout=30, what="the reply")[0]
            assert reply["content"].startswith(seen)
            assert len(seen) < len(reply["content"])  # seen before the reply was complete
            page.locator("li.msg.role-assistant").wait_for(timeout=10_000)
            page.context.close()
    finally:
        console.llm.control(token_delay=0.01)


def test_pausing_an_agent_from_the_console_holds_its_next_job_and_resuming_answers_it(
    console: Console,
) -> None:
    with console.http(console.key_a) as http:
        cid, user, agent_id = dm(http)
        page = console.page(OPERATOR_KEY)
        page.goto(f"{console.server.url}/console/agents")
        row = page.locator(f"#agent-{agent_id}")
        row.locator("button", has_text="Pause").click()
        page.locator(f"#agent-{agent_id}[data-status='paused']").wait_for(timeout=10_000)
        post(http, cid, user, "are you there?")
        wait_until(
            lambda: http.get(
                "/v1/jobs", params={"conversation_id": cid, "status": "waiting"}
            ).json()["items"],
            timeout=10,
            what="the waiting job",
        )
        page.goto(f"{console.server.url}/console/conversations/{cid}")
        page.locator("li.job[data-status='waiting'] .why", has_text="paused").wait_for(
            timeout=10_000
        )
        assert replies(http, cid) == []
        page.goto(f"{console.server.url}/console/agents")
        page.locator(f"#agent-{agent_id} button", has_text="Resume").click()
        wait_until(lambda: replies(http, cid), timeout=20, what="the reply after resume")
        page.goto(f"{console.server.url}/console/conversations/{cid}")
        page.locator("li.job[data-status='completed']").wait_for(timeout=10_000)
        page.context.close()


def test_a_failed_job_retried_from_the_console_completes(console: Console) -> None:
    console.llm.control(script=["s500_noretry"] * 3)
    with console.http(console.key_a) as http:
        cid, user, _ = dm(http)
        post(http, cid, user, "this one fails first")
        failed = wait_until(
            lambda: http.get(
                "/v1/jobs", params={"status": "failed", "conversation_id": cid}
            ).json()["items"],
            timeout=30,
            what="the failed job",
        )
        job_id = failed[0]["id"]
        console.llm.reset()  # the provider is back
        page = console.page(console.key_a)
        page.goto(f"{console.server.url}/console/failed")
        row = page.locator(f"tr[data-job='{job_id}']")
        assert row.locator(".failure").inner_text()  # its reason
        row.locator("button", has_text="Retry").click()
        page.locator("#notice.good").wait_for(timeout=10_000)
        wait_until(lambda: replies(http, cid), timeout=20, what="the reply after the retry")
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "completed"
        page.goto(f"{console.server.url}/console/conversations/{cid}")
        page.locator("li.job[data-status='completed']").wait_for(timeout=10_000)
        # a job that cannot be retried says why
        again = page.request.post(
            f"{console.server.url}/console/jobs/{job_id}/retry",
            headers={"X-CSRF-Token": page.locator("body").get_attribute("data-csrf") or ""},
        )
        assert again.status == 409 and "only failed or cancelled" in again.json()["error"]
        page.context.close()


def test_a_tenant_key_sees_only_its_tenant(console: Console) -> None:
    with console.http(console.key_a) as a, console.http(console.key_b) as b:
        cid_a, user_a, agent_a = dm(a)
        post(a, cid_a, user_a, "tenant a here")
        cid_b, _, _ = dm(b)
        page = console.page(console.key_b)
        page.locator(f"tr[data-conversation='{cid_b}']").wait_for(timeout=10_000)
        assert page.locator(f"tr[data-conversation='{cid_a}']").count() == 0
        assert page.locator("select[name=tenant]").count() == 0  # no tenant picker
        answer = page.goto(f"{console.server.url}/console/conversations/{cid_a}")
        assert answer is not None and answer.status == 404
        page.goto(f"{console.server.url}/console/agents")
        assert page.locator(f"#agent-{agent_a}").count() == 0
        # acting on the other tenant's agent by URL: 404 as well
        csrf = page.locator("body").get_attribute("data-csrf")
        refused = page.request.post(
            f"{console.server.url}/console/agents/{agent_a}/pause",
            headers={"X-CSRF-Token": csrf or "", "Content-Type": "application/json"},
            data="{}",
        )
        assert refused.status == 404
        # the providers page counts this tenant's jobs only (B has none finished)
        shown = page.goto(f"{console.server.url}/console/providers")
        assert shown is not None and shown.status == 200
        assert page.locator("tr[data-profile] td.num").first.inner_text() == "0"
        # the operator sees both
        op = console.page(OPERATOR_KEY)
        op.locator(f"tr[data-conversation='{cid_a}']").wait_for(timeout=10_000)
        assert op.locator(f"tr[data-conversation='{cid_b}']").count() == 1
        done = op.goto(f"{console.server.url}/console/providers")
        assert done is not None and done.status == 200
        assert int(op.locator("tr[data-profile] td.num").first.inner_text()) > 0
        page.context.close()
        op.context.close()


def test_read_only_keys_cannot_act_and_posts_need_the_csrf_token(console: Console) -> None:
    with console.http(console.key_a) as http:
        _, _, agent_id = dm(http)
    for key in (console.key_a_read, VIEWER_KEY):
        page = console.page(key)
        page.goto(f"{console.server.url}/console/agents")
        page.locator(f"#agent-{agent_id}").wait_for()
        assert page.locator(f"#agent-{agent_id} button").count() == 0
        csrf = page.locator("body").get_attribute("data-csrf") or ""
        refused = page.request.post(
            f"{console.server.url}/console/agents/{agent_id}/pause",
            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
            data="{}",
        )
        assert refused.status == 403 and "read-only" in refused.text()
        page.context.close()
    # an acting key without the token, or from another origin: refused
    url = f"/console/agents/{agent_id}/pause"
    with console.session(console.key_a) as a:
        csrf = a.get("/console/agents").text.split('data-csrf="', 1)[1].split('"', 1)[0]
        assert a.post(url, json={}).status_code == 403
        crossed = a.post(url, json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://x.test"})
        assert crossed.status_code == 403
        assert a.post(url, json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
        # the key never shows in a page, nor is it the cookie
        body = a.get("/console/agents").text
        assert console.key_a not in body and OPERATOR_KEY not in body
        assert console.key_a not in str(a.cookies.get("agentq_console"))
        # logged out: the session ends on the server (a copy of the cookie stops working)
        copy = dict(a.cookies)
        assert a.post("/console/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert httpx.get(f"{console.server.url}/console/agents", cookies=copy).status_code == 303


@contextmanager
def flower(console: Console) -> Iterator[str]:
    """`agentq flower` on the port the console's AGENTQ_FLOWER_URL names."""
    log = open(console.logs / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentq.cli", "flower", "--port", str(console.flower_port),
         "--address", "127.0.0.1", "--basic-auth", ":".join(FLOWER_AUTH)],
        env={**os.environ, **console.env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{console.flower_port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=30, what="flower")
        time.sleep(0.5)  # flower enables the workers' task events just after it listens
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        log.close()


def test_flower_and_the_console_link_both_ways(console: Console) -> None:
    with (
        console.http(console.key_a) as http,
        console.session(OPERATOR_KEY) as op,
        console.session(console.key_b) as b,
        flower(console) as base,
    ):
        cid, user, _ = dm(http)
        post(http, cid, user, "find me")
        wait_until(lambda: replies(http, cid), timeout=20, what="the reply")
        job_id = http.get("/v1/jobs", params={"conversation_id": cid}).json()["items"][0]["id"]
        page = op.get(f"/console/conversations/{cid}").text
        assert f'href="/console/jobs/{job_id}/flower"' in page
        assert FLOWER_AUTH[1] not in page  # Flower's credentials stay on the server

        def task_page() -> str | None:
            found = op.get(f"/console/jobs/{job_id}/flower")
            where = found.headers.get("location", "")
            return where if "/task/" in where else None

        # job -> its newest Celery task in Flower (found by its arguments)
        where = wait_until(task_page, timeout=20, what="the job's task in Flower")
        assert where.startswith(f"{base}/task/")
        task_id = where.rsplit("/", 1)[1]
        # Flower's task id -> the job's page in the console
        back = op.get(f"/console/flower/task/{task_id}")
        assert back.status_code == 303 and back.headers["location"] == f"/console/jobs/{job_id}"
        # the Flower task of another tenant's job: nothing found
        assert b.get(f"/console/flower/task/{task_id}").status_code == 404
        found = op.get("/console/find", params={"q": f"('{job_id}', 1)"})
        assert found.status_code == 303 and found.headers["location"] == f"/console/jobs/{job_id}"
        job = op.get(found.headers["location"])
        assert job.headers["location"] == f"/console/conversations/{cid}#job-{job_id}"
        assert b.get("/console/find", params={"q": job_id}).status_code == 404


def test_live_views_are_capped_per_tenant(console: Console) -> None:
    with console.http(console.key_b) as http, console.session(console.key_b) as b:
        cid, _, _ = dm(http)
        url = f"/console/conversations/{cid}/live"
        held = []
        try:
            for _ in range(3):
                response = b.send(b.build_request("GET", url), stream=True)
                lines = response.iter_lines()  # kept: dropping it would close the stream
                assert response.status_code == 200 and next(lines).startswith("retry:")
                held.append((response, lines))
            over = b.get(url)
            assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        finally:
            for response, _ in held:
                response.close()

        def reopened() -> bool:  # a closed view gives its slot back
            with b.stream("GET", url) as response:
                return response.status_code == 200

        wait_until(reopened, timeout=10, what="a slot back")
