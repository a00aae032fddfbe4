"""Screenshots of the operator console for the README (issue 18, item 3).

    .venv/bin/python ops/scripts/console_screenshots.py              # writes ops/console/*.png
    .venv/bin/python ops/scripts/console_screenshots.py --out /tmp/shots --pg-admin URL

Starts a stack of its own (a fresh database, its own Redis, one worker, the fake LLM and
`agentq api`), makes two tenants with agents and conversations in every state (answered,
failed, running, waiting for a paused agent, debouncing), then photographs the
conversation list, one conversation's timeline and the agents page in headless Chromium
(Debian's `chromium`, driven by playwright). A PostgreSQL server of the run's own
(initdb), or `--pg-admin URL`'s server.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq`, `ops` and `tests` here
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import (  # noqa: E402
    private_postgres,
    quiet_and_interruptible,
    say,
    started_stack,
)

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "screenshots-" + uuid.uuid4().hex
CHROMIUM = "/usr/bin/chromium"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "ops" / "console")
    p.add_argument("--pg-admin", default=None, help="a PostgreSQL server's admin URL")
    p.add_argument("--chromium", default=CHROMIUM)
    return p.parse_args(argv)


def wait_for(fn: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Tenant:
    """A tenant's HTTP API client (its key), making agents and DMs as a producer does."""

    def __init__(self, url: str, name: str) -> None:
        import httpx

        from agentq.ops.keys import create_key

        key, _ = create_key(f"{name}-key", name)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def agent(self, name: str, role: str, **limits: Any) -> str:
        answer = self.http.post("/v1/agents", json={"name": name, "role": role, **limits})
        answer.raise_for_status()
        return str(answer.json()["id"])

    def dm(self, agent: str, title: str, user: str, **settings: Any) -> tuple[str, str]:
        conv = self.http.post(
            "/v1/conversations",
            json={
                "kind": "dm",
                "title": title,
                "settings": {"debounce_seconds": 0.3, "max_wait_seconds": 2, **settings},
            },
        )
        conv.raise_for_status()
        cid = conv.json()["id"]
        self.http.post(f"/v1/conversations/{cid}/participants", json={"agent_id": agent})
        who = self.http.post(
            f"/v1/conversations/{cid}/participants", json={"user_id": user, "display_name": user}
        )
        return cid, str(who.json()["id"])

    def say(self, conv: tuple[str, str], text: str) -> None:
        cid, author = conv
        answer = self.http.post(
            f"/v1/conversations/{cid}/messages", json={"author_id": author, "content": text}
        )
        answer.raise_for_status()

    def replies(self, conv: tuple[str, str]) -> int:
        items = self.http.get(f"/v1/conversations/{conv[0]}/messages?after_seq=0").json()["items"]
        return sum(1 for m in items if m["role"] == "assistant")

    def jobs(self, conv: tuple[str, str], status: str) -> list[Any]:
        found = self.http.get("/v1/jobs", params={"conversation_id": conv[0], "status": status})
        return list(found.json()["items"])


def seed(url: str, llm: Any) -> str:
    """Conversations in every state; returns the one whose timeline is photographed."""
    acme, globex = Tenant(url, "acme"), Tenant(url, "globex")
    support = acme.agent("support", "answers customers", max_concurrent_jobs=2)
    billing = acme.agent("billing", "refunds and invoices")
    research = acme.agent("researcher", "digs into product questions")
    concierge = globex.agent("concierge", "books travel")

    story = acme.dm(support, "Order #1042: late delivery", "maria")
    acme.say(story, "Hi! My order #1042 was due on Monday and has not arrived.")
    wait_for(lambda: acme.replies(story) >= 1, "the first reply")
    acme.say(story, "The tracking page has said 'in transit' for five days.")
    acme.say(story, "Could you check with the carrier?")  # coalesces with the one before
    wait_for(lambda: acme.replies(story) >= 2, "the second reply")
    acme.say(story, "Thanks, a refund to my card would be fine.")
    wait_for(lambda: acme.replies(story) >= 3, "the third reply")

    done = []
    for title, user, text in (
        ("Invoice copy for March", "li", "Can I get a copy of my March invoice?"),
        ("Change of address", "sam", "I moved: please update my shipping address."),
    ):
        conv = acme.dm(support, title, user)
        acme.say(conv, text)
        done.append(conv)
    trip = globex.dm(concierge, "Lisbon in May", "ana")
    globex.say(trip, "Two nights in Lisbon in May, somewhere quiet?")
    done.append(trip)
    wait_for(lambda: all(acme.replies(c) for c in done[:2]) and globex.replies(trip), "replies")

    llm.control(script=["s500_noretry"] * 3)
    broken = acme.dm(research, "Spec sheet for model X2", "kim")
    acme.say(broken, "Where can I find the spec sheet for the X2?")
    wait_for(lambda: acme.jobs(broken, "failed"), "the failed job")
    llm.reset()

    llm.control(script=["hold:120"])
    running = acme.dm(research, "Compare plans A and B", "jo")
    acme.say(running, "What is the difference between plan A and plan B?")
    wait_for(lambda: acme.jobs(running, "active"), "the running job")

    acme.http.post(f"/v1/agents/{billing}/pause").raise_for_status()
    held = acme.dm(billing, "Refund for order #977", "pat")
    acme.say(held, "I returned order #977 two weeks ago; where is my refund?")
    wait_for(lambda: acme.jobs(held, "waiting"), "the waiting job")

    typing = globex.dm(
        concierge, "Porto day trip", "eli", debounce_seconds=60, max_wait_seconds=120
    )
    globex.say(typing, "Is a day trip to Porto from Lisbon worth it?")
    return story[0]


def shoot(url: str, out: Path, chromium: str, story: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(f"{url}/console/login")
        page.fill("#key", OPERATOR_KEY)
        page.click("#login button[type=submit]")
        page.wait_for_url("**/console/conversations")
        for name, path, full in (
            ("conversations", "/console/conversations", False),
            ("timeline", f"/console/conversations/{story}", True),
            ("agents", "/console/agents", False),
            ("failed", "/console/failed", False),
        ):
            page.goto(url + path)
            page.wait_for_load_state("networkidle") if name != "timeline" else None
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=full)
            shots.append(target)
            say(f"wrote {target}")
        browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    from tests.api_support import api_server

    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres())
        say("starting the stack")
        run = stack.enter_context(
            started_stack(
                admin, workers=1, concurrency=8, llm_latency=0.4, env={"LLM_TIMEOUT": "300"}
            )
        )
        env = {**run.env, "AGENTQ_CONSOLE_OPERATOR_KEY": OPERATOR_KEY,
               "AGENTQ_FLOWER_URL": "http://127.0.0.1:5555"}  # fmt: skip
        server = stack.enter_context(api_server(env, run.log_dir))
        say("seeding conversations")
        story = seed(server.url, run.llm)
        shoot(server.url, args.out, args.chromium, story)
    return 0


if __name__ == "__main__":
    sys.exit(main())
