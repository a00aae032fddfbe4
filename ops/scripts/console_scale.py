"""The console at scale (issue 18, item 4): a long conversation's timeline, and paging
through 100,000 conversations.

    .venv/bin/python ops/scripts/console_scale.py            # 1,000 messages, 300 jobs, 100,000 conversations
    .venv/bin/python ops/scripts/console_scale.py --conversations 300 --messages 50 --jobs 15 --json

A fresh database (on `--pg-admin URL`'s server, else a PostgreSQL server of the run's
own), its own Redis and `agentq api` (uvicorn, one process). Seeds, with bulk inserts
through `agentq.store.console.seed`: one conversation of `--messages` messages answered by
`--jobs` completed jobs, and `--conversations` more conversations. Then, over HTTP as
the browser asks (an operator's session):

- the timeline page of the long conversation, `--repeat` times (p50, max, bytes);
- the conversation list from its first page to its last, following each page's "older"
  link (keyset paging: 50 rows a page): pages, total time, p50/p95/max per page.

Figures go to stdout (a table, or `--json`); progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq`, `ops` and `tests` here
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import private_postgres, quiet_and_interruptible, say  # noqa: E402

OPERATOR_KEY = "scale-" + uuid.uuid4().hex
NEXT = re.compile(r'id="next-page" href="([^"]+)"')


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=10, help="timeline loads timed")
    p.add_argument("--pg-admin", default=None, help="a PostgreSQL server's admin URL")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def seed(args: argparse.Namespace) -> uuid.UUID:
    from agentq.client import Client
    from agentq.ops.keys import create_key
    from agentq.store.console import seed as bulk

    create_key("scale-key", "scale")
    client = Client(tenant="scale")
    agent = client.create_agent("scale-bot")
    tenant_id = client.tenant_id
    started = time.perf_counter()
    bulk.seed_conversations(tenant_id, args.conversations)
    long_conv = bulk.seed_history(tenant_id, agent.id, messages=args.messages, jobs=args.jobs)
    say(f"seeded in {time.perf_counter() - started:.1f} s")
    return long_conv


def measure(url: str, long_conv: uuid.UUID, repeat: int) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/console/login", json={"key": OPERATOR_KEY}).raise_for_status()  # a session
        http.get(f"/console/conversations/{long_conv}").raise_for_status()  # warm
        times, size = [], 0
        for _ in range(repeat):
            t = time.perf_counter()
            page = http.get(f"/console/conversations/{long_conv}")
            times.append(time.perf_counter() - t)
            page.raise_for_status()
            size = len(page.content)
        jobs_shown = page.text.count('class="job ')
        messages_shown = page.text.count('class="msg ')
        out["timeline"] = {
            "loads": repeat,
            "p50_ms": _ms(statistics.median(times)),
            "max_ms": _ms(max(times)),
            "bytes": size,
            "messages_shown": messages_shown,
            "jobs_shown": jobs_shown,
        }
        say(f"timeline: p50 {out['timeline']['p50_ms']} ms")
        pages, rows, per_page = 0, 0, []
        link: str | None = "/console/conversations"
        started = time.perf_counter()
        while link:
            t = time.perf_counter()
            page = http.get(link.replace("&amp;", "&"))
            per_page.append(time.perf_counter() - t)
            page.raise_for_status()
            pages += 1
            rows += page.text.count("data-conversation=")
            found = NEXT.search(page.text)
            link = (
                "/console/conversations" + found.group(1).split("/console/conversations", 1)[-1]
                if found
                else None
            )
            if pages % 200 == 0:
                say(f"list: {pages} pages, {rows} conversations")
        total = time.perf_counter() - started
        per_page.sort()
        out["list"] = {
            "pages": pages,
            "conversations": rows,
            "total_s": round(total, 2),
            "p50_ms": _ms(statistics.median(per_page)),
            "p95_ms": _ms(per_page[int(len(per_page) * 0.95) - 1 if len(per_page) > 1 else 0]),
            "max_ms": _ms(per_page[-1]),
            "first_ms": None,
        }
        t = time.perf_counter()
        http.get("/console/conversations").raise_for_status()
        out["list"]["first_ms"] = _ms(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    import os
    import tempfile

    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade
    from agentq.store.scratch import create_database, drop_database
    from agentq.testing.stack import use_env
    from tests.api_support import api_server

    saved = dict(os.environ)
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres())
        db_url = create_database(admin, prefix="agentq_scripts")
        stack.callback(drop_database, db_url, admin)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        upgrade(db_url)
        redis = stack.enter_context(EmbeddedRedis())
        env = {
            "AGENTQ_DATABASE_URL": db_url,
            "AGENTQ_REDIS_URL": redis.url,
            "AGENTQ_CONSOLE_OPERATOR_KEY": OPERATOR_KEY,
        }
        use_env(env)
        say(f"seeding {args.conversations} conversations and one of {args.messages} messages")
        long_conv = seed(args)
        log_dir = Path(tempfile.mkdtemp(prefix="agentq-console-scale-"))
        server = stack.enter_context(api_server(env, log_dir))
        figures = {
            "seeded": {
                "conversations": args.conversations + 1,
                "messages": args.messages,
                "jobs": args.jobs,
            },
            **measure(server.url, long_conv, args.repeat),
        }
    if args.json:
        print(json.dumps(figures))
    else:
        t, lst = figures["timeline"], figures["list"]
        print(
            f"timeline of {args.messages} messages / {args.jobs} jobs: p50 {t['p50_ms']} ms, "
            f"max {t['max_ms']} ms over {t['loads']} loads ({t['bytes']:,} bytes; "
            f"{t['messages_shown']} messages, {t['jobs_shown']} jobs shown)"
        )
        print(
            f"list of {lst['conversations']:,} conversations: {lst['pages']} pages in "
            f"{lst['total_s']} s; per page p50 {lst['p50_ms']} ms, p95 {lst['p95_ms']} ms, "
            f"max {lst['max_ms']} ms; first page {lst['first_ms']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
