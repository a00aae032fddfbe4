"""Fair shares across tenants (issue 16, item 5): one tenant's backlog and another's turns.

    .venv/bin/python ops/scripts/fairness.py                    # FIFO: no tenant cap
    .venv/bin/python ops/scripts/fairness.py --tenant-cap 8     # each tenant runs <= 8 jobs
    .venv/bin/python ops/scripts/fairness.py --a-messages 40 --a-conversations 8 \\
        --b-messages 4 --llm-latency 0.2 --json                 # a smoke run

On a fresh database (a PostgreSQL server of its own unless `--pg-admin URL`), its own
Redis, `--workers` Celery worker processes (threads pools of `--concurrency`), the
reconciler and the fake LLM answering in `--llm-latency` seconds: tenant A
(`agentq.Client(tenant="a")`) posts `--a-messages` messages over `--a-conversations` DMs
at once, from `--a-posters` threads; as soon as A has posted them all, tenant B posts one
message every `--b-every` seconds, `--b-messages` in all, round-robin over
`--b-conversations` DMs of its own. Each tenant has one agent with
`max_concurrent_jobs=--agent-slots` and a rate limit that never holds it back; every
conversation has a debounce of `--debounce` s, so each B message is one turn.
`--tenant-cap N` sets AGENTQ_TENANT_MAX_CONCURRENT_JOBS (0: no cap, one FIFO queue).

Once every message is answered it reads from the database, per tenant:

- reply latency of each message: its reply's `created_at` minus its own, the reply being
  the one of the job its `message_jobs` trigger link points at; p50/p95/p99/max, count;
- A's drain: from A's first post to A's last reply; and every message answered exactly
  once (one trigger job, completed, with one reply), plus `ops.chaos.check`'s lost /
  duplicated / reordered / overlapping;
- where B's time goes, per message: window (job `created_at` minus the message's: the
  debounce, the dispatch timer and the control queue), claim (job `started_at`, when the
  slot is taken and `agent.responding` is written, minus its `created_at`: the advance
  task's control-queue wait and any parking at a limit), LLM queue (the reply's
  `created_at` minus the call's own `latency_ms` minus `started_at`: the run_job task
  waiting for an LLM thread) and the call itself (`latency_ms`);
- the lengths of the `agentq.control` and `agentq.llm` Redis lists while B posts, sampled
  every 0.5 s (mean and max).

Figures go to stdout (a table, or `--json`); progress to stderr. Exit 1 if a message was
not answered exactly once or the check found an anomaly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq` and `ops` in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import (  # noqa: E402
    HelpFormatter,
    private_postgres,
    quiet_and_interruptible,
    say,
    started_stack,
    wait_for,
)
from ops.scripts.window_crowd import PROFILES, RATE_LIMIT, percentiles  # noqa: E402

QUEUES = ("agentq.control", "agentq.llm")


@dataclass
class Tenant:
    """One tenant's messages and how long their replies took."""

    name: str
    messages: int = 0
    #: messages answered exactly once (one trigger job, completed, with one reply)
    answered_once: int = 0
    jobs: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    tenant_cap: int
    llm_latency: float
    a_post_seconds: float
    a_drain_seconds: float
    b_post_seconds: float
    a: Tenant
    b: Tenant
    #: B's turn phases, ms: window, claim, llm_queue, llm_call
    b_phases_ms: dict[str, dict[str, float]]
    #: queue lengths while B posted: {queue: {"mean": .., "max": ..}}
    queues_during_b: dict[str, dict[str, float]]
    lost: int
    duplicated: int
    reordered: int
    overlapping: int

    @property
    def ok(self) -> bool:
        return (
            self.a.answered_once == self.a.messages
            and self.b.answered_once == self.b.messages
            and self.lost == self.duplicated == self.reordered == self.overlapping == 0
        )


def tenant_side(
    name: str, conversations: int, debounce: float, slots: int
) -> tuple[Any, list[tuple[Any, Any]]]:
    """The tenant's client and DMs (conversation id, user participant id) with its agent."""
    from agentq.client import Client

    client = Client(tenant=name)
    agent = client.create_agent(
        f"fair-{name}", max_concurrent_jobs=slots, rate_limit_per_minute=RATE_LIMIT
    )
    settings = {"debounce_seconds": debounce, "max_wait_seconds": debounce + 1}

    def one(i: int) -> tuple[Any, Any]:
        conv = client.create_conversation("dm", settings=settings)
        client.add_participant(conv.id, agent=agent.id)
        return conv.id, client.add_participant(conv.id, user_id=f"{name}-user-{i}").id

    with ThreadPoolExecutor(8) as pool:
        return client, list(pool.map(one, range(conversations)))


def post_flood(client: Any, convs: list[tuple[Any, Any]], messages: int, posters: int) -> None:
    """`messages` over `convs`, round by round (each conversation's k-th before any k+1-th),
    from `posters` threads, as fast as they go."""

    def post(k: int) -> None:
        for i in range(k, messages, posters):
            conv_id, user_id = convs[i % len(convs)]
            client.post_message(conv_id, user_id, f"flood {i}")

    threads = [threading.Thread(target=post, args=(k,)) for k in range(posters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def post_steady(client: Any, convs: list[tuple[Any, Any]], messages: int, every: float) -> None:
    """One message every `every` seconds, round-robin over `convs`."""
    start = time.monotonic()
    for i in range(messages):
        time.sleep(max(0.0, start + i * every - time.monotonic()))
        conv_id, user_id = convs[i % len(convs)]
        client.post_message(conv_id, user_id, f"turn {i}")


class QueueSampler(threading.Thread):
    """LLEN of the control and LLM queues every `every` seconds, until stopped."""

    def __init__(self, redis_url: str, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.every = every
        self.samples: dict[str, list[int]] = {q: [] for q in QUEUES}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for q in QUEUES:
                with contextlib.suppress(Exception):  # a missed sample is no figure lost
                    self.samples[q].append(int(self.redis.llen(q)))
            self._done.wait(self.every)

    def stop(self) -> dict[str, dict[str, float]]:
        self._done.set()
        self.join()
        return {
            q: {
                "mean": round(sum(v) / len(v), 1) if v else 0.0,
                "max": float(max(v, default=0)),
            }
            for q, v in self.samples.items()
        }


def _ms(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds() * 1000


def measure(
    convs: dict[str, set[Any]],
) -> tuple[dict[str, Tenant], dict[str, list[float]], float]:
    """Per tenant: messages, answered exactly once, latencies; B's phases; A's drain (its
    first message to its last reply, s)."""
    from sqlalchemy import select

    from agentq.store.models import Job, Message, MessageJob
    from agentq.store.session import reader

    with reader() as s:
        users = s.execute(
            select(Message.id, Message.conversation_id, Message.created_at).where(
                Message.role == "user"
            )
        ).all()
        triggers = s.execute(
            select(MessageJob.message_id, MessageJob.job_id).where(MessageJob.status == "trigger")
        ).all()
        jobs = {
            j.id: j
            for j in s.execute(
                select(Job.id, Job.status, Job.created_at, Job.started_at, Job.result)
            ).all()
        }
        replies: dict[Any, list[datetime]] = defaultdict(list)
        for job_id, at in s.execute(
            select(Message.reply_to_job_id, Message.created_at).where(
                Message.reply_to_job_id.is_not(None)
            )
        ).all():
            replies[job_id].append(at)
    linked: dict[Any, list[Any]] = defaultdict(list)
    for message_id, job_id in triggers:
        linked[message_id].append(job_id)
    which = {c: name for name, cs in convs.items() for c in cs}
    out = {name: Tenant(name) for name in convs}
    latencies: dict[str, list[float]] = {name: [] for name in convs}
    job_ids: dict[str, set[Any]] = {name: set() for name in convs}
    phases: dict[str, list[float]] = {k: [] for k in ("window", "claim", "llm_queue", "llm_call")}
    a_span: list[datetime] = []
    for message_id, conv_id, posted in users:
        name = which.get(conv_id)
        if name is None:
            continue
        t = out[name]
        t.messages += 1
        js = linked.get(message_id, [])
        if len(js) != 1 or jobs[js[0]].status != "completed" or len(replies[js[0]]) != 1:
            continue
        job, reply = jobs[js[0]], replies[js[0]][0]
        t.answered_once += 1
        job_ids[name].add(job.id)
        latencies[name].append(_ms(reply, posted))
        if name == "a":
            a_span += [posted, reply]
        elif job.started_at is not None:
            call = float((job.result or {}).get("latency_ms", 0))
            phases["window"].append(_ms(job.created_at, posted))
            phases["claim"].append(_ms(job.started_at, job.created_at))
            phases["llm_queue"].append(_ms(reply, job.started_at) - call)
            phases["llm_call"].append(call)
    for name, t in out.items():
        t.jobs = len(job_ids[name])
        t.latency_ms = {**percentiles(latencies[name]), "count": len(latencies[name])}
    drain = (max(a_span) - min(a_span)).total_seconds() if a_span else -1.0
    return out, phases, drain


def run_once(run: Any, args: argparse.Namespace) -> Result:
    from agentq.clock import utcnow
    from ops.chaos.check import check_database, unfinished_before, wait_settled

    say(f"tenant A: {args.a_conversations} DMs; tenant B: {args.b_conversations}")
    a, a_convs = tenant_side("a", args.a_conversations, args.debounce, args.agent_slots)
    b, b_convs = tenant_side("b", args.b_conversations, args.debounce, args.agent_slots)
    say(f"tenant A posts {args.a_messages} messages from {args.a_posters} threads")
    t0 = time.monotonic()
    post_flood(a, a_convs, args.a_messages, args.a_posters)
    a_post = time.monotonic() - t0
    say(f"  posted in {a_post:.1f}s; tenant B posts {args.b_messages}, every {args.b_every}s")
    sampler = QueueSampler(run.env["AGENTQ_REDIS_URL"])
    sampler.start()
    t1 = time.monotonic()
    post_steady(b, b_convs, args.b_messages, args.b_every)
    b_post = time.monotonic() - t1
    queues = sampler.stop()
    say(f"  B posted in {b_post:.1f}s; waiting for every reply")
    end = utcnow()
    try:
        wait_for(
            "every message answered",
            lambda: unfinished_before(end) == 0,
            args.drain_timeout,
            every=0.5,
        )
    except RuntimeError as exc:
        say(str(exc))  # what is unanswered counts as lost below
    wait_settled(30.0, stable_for=2)
    tenants, phases, a_drain = measure({"a": {c for c, _ in a_convs}, "b": {c for c, _ in b_convs}})
    anomalies = check_database()
    return Result(
        tenant_cap=args.tenant_cap,
        llm_latency=args.llm_latency,
        a_post_seconds=round(a_post, 2),
        a_drain_seconds=round(a_drain, 2),
        b_post_seconds=round(b_post, 2),
        a=tenants["a"],
        b=tenants["b"],
        b_phases_ms={k: percentiles(v) for k, v in phases.items()},
        queues_during_b=queues,
        lost=anomalies.lost,
        duplicated=anomalies.duplicated,
        reordered=anomalies.reordered,
        overlapping=anomalies.overlapping,
    )


def table(r: Result) -> list[str]:
    def secs(p: dict[str, float]) -> str:
        return "".join(f"{p[k] / 1000:>8.2f}" for k in ("p50", "p95", "p99", "max"))

    cap = r.tenant_cap or "off (FIFO)"
    out = [
        f"tenant cap {cap}, LLM latency {r.llm_latency:g}s; A posted in {r.a_post_seconds}s, "
        f"drained in {r.a_drain_seconds}s (first post to last reply); B posted over "
        f"{r.b_post_seconds}s",
        f"{'tenant':<7}{'messages':>9}{'jobs':>6}{'answered 1x':>12} | reply latency s: "
        f"{'p50':>6}{'p95':>8}{'p99':>8}{'max':>8}",
    ]
    for t in (r.a, r.b):
        out.append(
            f"{t.name:<7}{t.messages:>9}{t.jobs:>6}{t.answered_once:>12} | "
            f"{'':>14}{secs(t.latency_ms)}"
        )
    out.append(f"B's turn phases, s:  {'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    for k, p in r.b_phases_ms.items():
        out.append(f"  {k:<19}{secs(p)}")
    out.append(
        "queues while B posted: "
        + ", ".join(
            f"{q} mean {v['mean']:g} max {v['max']:g}" for q, v in r.queues_during_b.items()
        )
    )
    out.append(
        f"lost {r.lost}, duplicated {r.duplicated}, reordered {r.reordered}, "
        f"overlapping {r.overlapping}"
    )
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--a-messages", type=int, default=2000, help="tenant A's flood")
    p.add_argument("--a-conversations", type=int, default=200, help="A's DMs")
    p.add_argument("--a-posters", type=int, default=8, help="threads posting A's flood")
    p.add_argument("--b-messages", type=int, default=40, help="tenant B's messages")
    p.add_argument("--b-every", type=float, default=0.5, help="seconds between B's messages")
    p.add_argument("--b-conversations", type=int, default=4, help="B's DMs (round-robin)")
    p.add_argument("--debounce", type=float, default=0.1, help="every conversation's, seconds")
    p.add_argument(
        "--tenant-cap",
        type=int,
        default=0,
        help="AGENTQ_TENANT_MAX_CONCURRENT_JOBS: running jobs per tenant (0: no cap)",
    )
    p.add_argument("--agent-slots", type=int, default=500, help="each agent's max_concurrent_jobs")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=20, help="threads per worker")
    p.add_argument("--llm-latency", type=float, default=1.0, help="fake LLM seconds per call")
    p.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait")
    p.add_argument(
        "--pg-admin", default=None, help="an existing server's admin URL; none: a server of its own"
    )
    p.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    counts = (args.a_messages, args.a_conversations, args.a_posters, args.b_messages)
    if min(counts) < 1 or args.b_conversations < 1 or args.agent_slots < 1:
        p.error("message, conversation, poster and slot counts must be >= 1")
    if args.b_every < 0 or args.debounce < 0 or args.tenant_cap < 0:
        p.error("--b-every, --debounce and --tenant-cap must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    env = {
        "AGENTQ_MODEL_PROFILES": PROFILES,
        "AGENTQ_TENANT_MAX_CONCURRENT_JOBS": str(args.tenant_cap),
    }
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres())
        say(
            f"starting the stack ({args.workers} workers x {args.concurrency} threads, "
            f"tenant cap {args.tenant_cap})"
        )
        run = stack.enter_context(
            started_stack(
                admin,
                workers=args.workers,
                concurrency=args.concurrency,
                llm_latency=args.llm_latency,
                env=env,
                log_dir=args.log_dir,
            )
        )
        r = run_once(run, args)
    if args.json:
        print(json.dumps({**asdict(r), "ok": r.ok}))
    else:
        print("\n".join(table(r)))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
