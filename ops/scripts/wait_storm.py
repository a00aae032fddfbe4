"""One tenant's waiting posts cannot stall another (issue 15, "what it must show" 4).

    .venv/bin/python ops/scripts/wait_storm.py                     # 500 waits, the API's cap
    .venv/bin/python ops/scripts/wait_storm.py --wait-cap 500      # all 500 admitted
    .venv/bin/python ops/scripts/wait_storm.py --waits 20 --wait-cap 5 --llm-latency 1 --json

The real thing: the API under uvicorn (`agentq api`, one process), two Celery worker
processes, the reconciler, a slow fake LLM (`--llm-latency`, 5 s) on a fresh database and
its own Redis. Tenant A has `--conversations` DMs with one agent; tenant B has its own.

1. B's `--b-clients` threads (4) each send requests back to back over HTTP, in turn
   `GET /v1/agents`, `POST .../messages` (no wait) and `GET .../messages`, for
   `--baseline` seconds alone, then during the storm.
2. The storm: A opens `--waits` (500) concurrent `POST .../messages?wait=--wait` (httpx
   async, one connection each), spread over its conversations. Past the tenant's cap
   (AGENTQ_API_MAX_WAITS_PER_TENANT, 20 by default; `--wait-cap` sets it) a post is
   refused whole: 429 with `Retry-After`, nothing stored.
3. Once every A post has its answer, B stops.

Prints B's latency (p50/p95/p99/max, ms) alone and during the storm, B's non-2xx; A's
answers by status, how many 429s carried `Retry-After`, and, from the database, how many
of the 429'd posts were stored (must be 0) and of the admitted ones (all); every 5xx.
Exit 1 on a 5xx, a 429 without `Retry-After`, or a 429'd post stored. B's p99 is a figure
to read (target under 100 ms), not a check: this machine's other load shows in it.

A PostgreSQL server of the run's own (initdb), or `--pg-admin URL`'s server. Figures go
to stdout (a table, or `--json`); progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq`, `ops` and `tests` here
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import (  # noqa: E402
    quiet_and_interruptible,
    say,
    started_stack,
)
from ops.scripts.feed_completeness import measure  # noqa: E402
from ops.scripts.window_crowd import percentiles  # noqa: E402

#: a default profile whose caps let A's agent answer all its conversations at once
PROFILES = json.dumps(
    {"default": {"max_concurrent_jobs": 1000, "rate_limit_per_minute": 1_000_000}}
)


@dataclass
class Sample:
    phase: str
    route: str
    status: int
    ms: float
    #: when it was sent, monotonic seconds
    at: float


@dataclass
class Tenant:
    key: str
    conversations: list[tuple[str, str]]  # (conversation id, author participant id)


def make_tenant(name: str, conversations: int, slots: int) -> Tenant:
    """A tenant with a key, an agent and `conversations` DMs of it with a user."""
    from agentq.client import Client
    from agentq.ops.keys import create_key

    key, _ = create_key(f"{name}-key", name)
    client = Client(tenant=name)
    agent = client.create_agent(
        f"{name}-bot", max_concurrent_jobs=slots, rate_limit_per_minute=100_000
    )
    convs = []
    for i in range(conversations):
        conv = client.create_conversation(
            "dm", settings={"debounce_seconds": 0.2, "max_wait_seconds": 1}
        )
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        convs.append((str(conv.id), str(user.id)))
    return Tenant(key, convs)


class TenantB(threading.Thread):
    """One of B's clients: requests back to back, each timed, until stopped."""

    ROUTES = ("GET /v1/agents", "POST messages", "GET messages")

    def __init__(self, url: str, tenant: Tenant, phase: list[str], n: int) -> None:
        super().__init__(daemon=True)
        self.url, self.tenant, self.phase, self.n = url, tenant, phase, n
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import httpx

        conv, author = self.tenant.conversations[0]
        headers = {"Authorization": f"Bearer {self.tenant.key}"}
        i = 0
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as http:
            while not self.stopped.is_set():
                route = self.ROUTES[i % 3]
                i += 1
                phase = self.phase[0]
                at = time.monotonic()
                start = time.perf_counter()
                try:
                    if route == "GET /v1/agents":
                        status = http.get("/v1/agents").status_code
                    elif route == "POST messages":
                        body = {"author_id": author, "content": f"b {self.n} {i}"}
                        status = http.post(
                            f"/v1/conversations/{conv}/messages", json=body
                        ).status_code
                    else:
                        path = f"/v1/conversations/{conv}/messages"
                        status = http.get(path, params={"limit": 20}).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append(
                    Sample(phase, route, status, (time.perf_counter() - start) * 1000, at)
                )


@dataclass
class Storm:
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: list[int] = field(default_factory=list)
    refused_without_retry_after: int = 0
    refused: set[str] = field(default_factory=set)
    admitted: set[str] = field(default_factory=set)
    admitted_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def storm(url: str, tenant: Tenant, waits: int, wait: float) -> Storm:
    """`waits` concurrent posts with `?wait=` from one tenant; each post's content is a
    token kept by outcome."""
    import httpx

    out = Storm()
    limits = httpx.Limits(max_connections=waits + 10, max_keepalive_connections=waits + 10)
    headers = {"Authorization": f"Bearer {tenant.key}"}

    async def one(http: httpx.AsyncClient, i: int) -> None:
        conv, author = tenant.conversations[i % len(tenant.conversations)]
        token = f"storm-{i}-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        try:
            r = await http.post(
                f"/v1/conversations/{conv}/messages",
                params={"wait": wait},
                json={"author_id": author, "content": token},
            )
        except httpx.HTTPError as exc:
            out.errors.append(repr(exc))
            out.statuses[0] += 1
            return
        out.statuses[r.status_code] += 1
        if r.status_code == 429:
            out.refused.add(token)
            if "retry-after" in r.headers:
                out.retry_after.append(int(r.headers["retry-after"]))
            else:
                out.refused_without_retry_after += 1
        elif r.status_code in (200, 201, 202):
            out.admitted.add(token)
            out.admitted_ms.append((time.perf_counter() - start) * 1000)

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=wait + 60
    ) as http:
        await asyncio.gather(*(one(http, i) for i in range(waits)))
    return out


def storm_process(url: str, tenant: Tenant, waits: int, wait: float) -> Storm:
    return asyncio.run(storm(url, tenant, waits, wait))


def stored_contents(tenant_name: str, tenant: Tenant) -> set[str]:
    """Every user message stored in the tenant's conversations (read in-process)."""
    from agentq.client import Client

    client = Client(tenant=tenant_name)
    found: set[str] = set()
    for conv, _ in tenant.conversations:
        after = 0
        while page := client.list_messages(conv, after_seq=after, limit=500):
            found |= {m.content for m in page if m.role == "user"}
            after = page[-1].seq
    return found


def latency(samples: list[Sample]) -> dict[str, Any]:
    ok = [s.ms for s in samples if 200 <= s.status < 300]
    return {
        "requests": len(samples),
        **percentiles(ok),
        "non_2xx": sum(1 for s in samples if not 200 <= s.status < 300),
        "5xx": sum(1 for s in samples if s.status >= 500 or s.status == 0),
    }


def run(args: argparse.Namespace, admin: str) -> dict[str, Any]:
    from tests.api_support import api_server

    env = {"AGENTQ_MODEL_PROFILES": PROFILES, "LLM_TIMEOUT": str(args.llm_latency + 30)}
    if args.wait_cap:
        env["AGENTQ_API_MAX_WAITS_PER_TENANT"] = str(args.wait_cap)
    say(
        f"starting the stack ({args.workers} workers x {args.concurrency}, LLM {args.llm_latency} s)"
    )
    with (
        started_stack(
            admin,
            workers=args.workers,
            concurrency=args.concurrency,
            llm_latency=args.llm_latency,
            env=env,
        ) as stack,
        api_server(stack.env, stack.log_dir) as server,
    ):
        a = make_tenant("tenant-a", args.conversations, args.slots)
        b = make_tenant("tenant-b", 1, 4)
        phase = ["alone"]
        clients = [TenantB(server.url, b, phase, n) for n in range(args.b_clients)]
        for c in clients:
            c.start()
        # A's posts go from a process of its own (started and warm before the storm), so
        # that their client work does not slow B's requests in this one
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(quiet_and_interruptible).result()
            time.sleep(args.baseline)
            say(f"storm: {args.waits} posts with wait={args.wait:g} from tenant A")
            phase[0] = "storm"
            started = time.monotonic()
            result = pool.submit(storm_process, server.url, a, args.waits, args.wait).result()
            storm_seconds = time.monotonic() - started
        for c in clients:
            c.stopped.set()
        for c in clients:
            c.join(60)
        stored = stored_contents("tenant-a", a)
    samples = [s for c in clients for s in c.samples]
    by_phase = {p: [s for s in samples if s.phase == p] for p in ("alone", "storm")}
    per_second: dict[int, list[float]] = {}
    for s in by_phase["storm"]:
        per_second.setdefault(int(s.at - started), []).append(s.ms)
    return {
        "waits": args.waits,
        "wait_seconds": args.wait,
        "wait_cap": args.wait_cap or "default (AGENTQ_API_MAX_WAITS_PER_TENANT)",
        "llm_latency": args.llm_latency,
        "storm_seconds": round(storm_seconds, 2),
        "a": {
            "by_status": {str(k): v for k, v in sorted(result.statuses.items())},
            "429_with_retry_after": len(result.retry_after),
            "429_without_retry_after": result.refused_without_retry_after,
            "retry_after_range": [min(result.retry_after), max(result.retry_after)]
            if result.retry_after
            else None,
            "refused_stored": len(result.refused & stored),
            "admitted_stored": len(result.admitted & stored),
            "admitted": len(result.admitted),
            "admitted_ms": percentiles(result.admitted_ms),
            "5xx": sum(v for k, v in result.statuses.items() if k >= 500 or k == 0),
            "errors": result.errors[:5],
        },
        "b": {phase: latency(by_phase[phase]) for phase in by_phase},
        "b_storm_max_ms_by_second": [
            round(max(per_second.get(i, [0.0])), 1) for i in range(int(storm_seconds) + 1)
        ],
        "b_by_route_storm": {
            route: latency([s for s in by_phase["storm"] if s.route == route])
            for route in TenantB.ROUTES
        },
    }


def report(out: dict[str, Any]) -> str:
    a = out["a"]
    lines = [
        f"wait storm: {out['waits']} posts with wait={out['wait_seconds']:g} from tenant A "
        f"(cap {out['wait_cap']}, LLM {out['llm_latency']:g} s), {out['storm_seconds']} s",
        f"A: answers {a['by_status']}; 429 with Retry-After {a['429_with_retry_after']} "
        f"(range {a['retry_after_range']}), without {a['429_without_retry_after']}; "
        f"stored: {a['refused_stored']} of the 429'd, {a['admitted_stored']} of "
        f"{a['admitted']} admitted; 5xx {a['5xx']}",
        f"{'B (ms)':<24} {'requests':>8} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'non-2xx':>8} {'5xx':>4}",
    ]
    rows = [(f"B {k}", v) for k, v in out["b"].items()]
    rows += [(f"  storm {k}", v) for k, v in out["b_by_route_storm"].items()]
    for name, v in rows:
        lines.append(
            f"{name:<24} {v['requests']:>8} {v['p50']:>7} {v['p95']:>7} {v['p99']:>7} "
            f"{v['max']:>7} {v['non_2xx']:>8} {v['5xx']:>4}"
        )
    lines.append(
        f"B's slowest request in each second of the storm (ms): {out['b_storm_max_ms_by_second']}"
    )
    lines += [f"  error: {e}" for e in a["errors"]]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Tenant A's concurrent ?wait= posts against tenant B's latency; 429s "
        "with Retry-After store nothing (issue 15)."
    )
    p.add_argument("--waits", type=int, default=500, help="A's concurrent posts with ?wait=")
    p.add_argument("--wait", type=float, default=30.0, help="the ?wait= seconds")
    p.add_argument(
        "--wait-cap", type=int, default=0, help="AGENTQ_API_MAX_WAITS_PER_TENANT (0: the API's)"
    )
    p.add_argument("--conversations", type=int, default=50, help="A's DMs the posts go to")
    p.add_argument("--slots", type=int, default=50, help="A's agent's max_concurrent_jobs")
    p.add_argument("--b-clients", type=int, default=4, help="B's threads, requests back to back")
    p.add_argument("--baseline", type=float, default=3.0, help="seconds B runs alone first")
    p.add_argument("--llm-latency", type=float, default=5.0, help="fake LLM seconds per call")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=20, help="threads per worker")
    p.add_argument("--pg-admin", default=None, help="an existing server's admin URL")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if min(args.waits, args.conversations, args.b_clients, args.slots) < 1 or args.wait <= 0:
        p.error("--waits, --conversations, --b-clients, --slots and --wait must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    out = measure(parse(argv), run, report)
    a = out["a"]
    bad = a["5xx"] or a["429_without_retry_after"] or a["refused_stored"]
    bad = bad or any(v["5xx"] for v in out["b"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
