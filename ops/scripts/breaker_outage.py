"""A provider outage under load, and the circuit breaker (issue 16, item 6).

    .venv/bin/python ops/scripts/breaker_outage.py                  # a 60 s outage
    .venv/bin/python ops/scripts/breaker_outage.py -d 10 -n 10      # a smoke run
    .venv/bin/python ops/scripts/breaker_outage.py --fault 500      # HTTP 500s, not refused

On a fresh PostgreSQL database, its own Redis, two Celery worker processes, the reconciler
and the fake LLM over HTTP: N conversations each post a message every `--every` seconds.
After `--warmup` seconds the provider goes down for `--duration` seconds (`refused`: the
fake LLM is stopped, so connections are refused; `500`: it answers HTTP 500 to all), then
comes back; posting goes on for `--tail` seconds more, and the run waits until every job
has finished. The breaker runs with its settings (the defaults unless AGENTQ_BREAKER_* are
set in the environment). Then it prints, from the database and the workers' metrics:

- jobs failed (0 expected), and failed attempts charged to jobs: in all, and while the
  circuit was open (0 expected: a job held by the circuit spends none);
- holds (`status.engine` events with reason `circuit_open`) and the jobs they held;
- when the circuit opened, re-opened and closed (`provider.circuit_*` events), relative to
  the start of the outage, and `agentq_circuit_transitions_total` from the workers;
- jobs answered after the provider came back, how long until the circuit closed and
  until the last answer; and lost / duplicated / reordered / overlapping replies
  (`ops.chaos.check.check_database`);
- with `--fault 500`, the requests that reached the provider during the outage.

Run it with AGENTQ_BREAKER_FAILURES=0 for the baseline without a breaker.

Figures go to stdout (a table, or `--json`); progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq` and `ops` in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: settings of the run (the breaker's own are left at their defaults)
BASE_ENV = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.5",
    "AGENTQ_MAX_WAIT_SECONDS": "2",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "2",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "2",
    "LLM_PROVIDER": "openai",
    "LLM_API_KEY": "sk-scripts-not-a-secret",
    "LLM_TIMEOUT": "10",
    "AGENTQ_MODEL_PROFILES": json.dumps(
        {"default": {"max_concurrent_jobs": 100, "rate_limit_per_minute": 1_000_000}}
    ),
}
TRANSITION = re.compile(
    r'agentq_circuit_transitions_total\{profile="([^"]+)",state="(\w+)"\} (\S+)'
)


def say(text: str) -> None:
    """Progress, on stderr (stdout holds the figures only)."""
    print(text, file=sys.stderr, flush=True)


def _scrape(ports: list[int]) -> dict[str, float]:
    """`agentq_circuit_transitions_total` summed over the workers, by state."""
    import httpx

    out: dict[str, float] = {}
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for _profile, state, value in TRANSITION.findall(text):
            out[state] = out.get(state, 0.0) + float(value)
    return out


class Producers(threading.Thread):
    """Each conversation posts a message every `every` seconds (jittered) until stopped."""

    def __init__(self, client: Any, dms: list[tuple[Any, Any]], every: float) -> None:
        super().__init__(daemon=True)
        self.client, self.dms, self.every = client, dms, every
        self.stop = threading.Event()
        self.posted: list[float] = []

    def run(self) -> None:
        rng = random.Random(7)
        due = {conv.id: time.time() + rng.uniform(0, self.every) for conv, _ in self.dms}
        while not self.stop.is_set():
            now = time.time()
            for conv, user in self.dms:
                if due[conv.id] <= now:
                    self.client.post_message(conv.id, user.id, f"message {len(self.posted)}")
                    self.posted.append(now)
                    due[conv.id] = now + self.every * rng.uniform(0.5, 1.5)
            self.stop.wait(0.05)


def _unfinished() -> int:
    from sqlalchemy import func, select

    from agentq.states import UNFINISHED_JOB_STATES
    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        query = select(func.count()).select_from(Job).where(Job.status.in_(UNFINISHED_JOB_STATES))
        return int(s.scalar(query) or 0)


def _figures(down_at: float, back_at: float) -> dict[str, Any]:
    """What the database says about the run."""
    from sqlalchemy import select

    from agentq.store.models import Event, Job
    from agentq.store.session import reader
    from ops.chaos.check import check_database

    def rel(t: datetime) -> float:
        return round(t.timestamp() - down_at, 1)

    with reader() as s:
        jobs = list(s.scalars(select(Job)))
        events = list(
            s.scalars(
                select(Event)
                .where(
                    Event.type.in_(("provider.circuit_opened", "provider.circuit_closed"))
                    | Event.type.in_(("job.retrying", "job.failed", "status.engine"))
                )
                .order_by(Event.id)
            )
        )
    circuit = [e for e in events if e.type.startswith("provider.")]
    # The open intervals, from the operator events (an open one lasts to the end).
    intervals: list[tuple[float, float]] = []
    opened: float | None = None
    for e in circuit:
        t = e.created_at.timestamp()
        if e.type == "provider.circuit_opened" and opened is None:
            opened = t
        elif e.type == "provider.circuit_closed" and opened is not None:
            intervals.append((opened, t))
            opened = None
    if opened is not None:
        intervals.append((opened, float("inf")))
    charged = [e for e in events if e.type in ("job.retrying", "job.failed")]
    while_open = [
        e for e in charged if any(a <= e.created_at.timestamp() <= b for a, b in intervals)
    ]
    holds = [
        e
        for e in events
        if e.type == "status.engine" and e.payload.get("data", {}).get("reason") == "circuit_open"
    ]
    closes = [e.created_at.timestamp() for e in circuit if e.type == "provider.circuit_closed"]
    first_close_after = min((t for t in closes if t >= back_at), default=None)
    answered_after = [j for j in jobs if j.finished_at and j.finished_at.timestamp() > back_at]
    last = max((j.finished_at.timestamp() for j in jobs if j.finished_at), default=back_at)
    anomalies = check_database()
    return {
        "jobs": len(jobs),
        "jobs_completed": sum(j.status == "completed" for j in jobs),
        "jobs_failed": sum(j.status == "failed" for j in jobs),
        "jobs_unfinished": sum(j.status in ("waiting", "active", "delayed") for j in jobs),
        "failed_attempts_charged": len(charged),
        "failed_attempts_charged_while_open": len(while_open),
        "attempts_total": sum(j.attempts for j in jobs),
        "holds": len(holds),
        "jobs_held": len({e.payload["data"].get("job_id") for e in holds}),
        "circuit_events": [
            (
                e.type.removeprefix("provider.circuit_")
                + (" (again)" if e.payload.get("reopened") else ""),
                rel(e.created_at),
                e.payload.get("open_seconds"),
            )
            for e in circuit
        ],
        "answered_after_recovery": len(answered_after),
        "closed_after_recovery_s": (
            round(first_close_after - back_at, 1) if first_close_after else None
        ),
        "last_answer_after_recovery_s": round(last - back_at, 1),
        "lost": anomalies.lost,
        "duplicated": anomalies.duplicated,
        "reordered": anomalies.reordered,
        "overlapping": anomalies.overlapping,
        "inconsistent": anomalies.inconsistent,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from agentq.client import Client
    from agentq.config import get_settings
    from agentq.runtime.embedded import EmbeddedRedis, free_port
    from agentq.store.migrate import upgrade
    from agentq.store.scratch import create_database, drop_database
    from agentq.testing.fake_llm import FakeLLMServer
    from agentq.testing.stack import Stack, use_env

    llm_port = free_port()
    llm = FakeLLMServer(latency=args.latency, port=llm_port).start()
    db_url = create_database(prefix="agentq_breaker")
    upgrade(db_url)
    log_dir = Path(tempfile.mkdtemp(prefix="agentq-breaker-"))
    try:
        with EmbeddedRedis() as redis:
            env = {
                **BASE_ENV,
                "AGENTQ_DATABASE_URL": db_url,
                "AGENTQ_REDIS_URL": redis.url,
                "LLM_ENDPOINT": llm.url,
            }
            use_env(env)
            s = get_settings()
            settings = {
                "failures": s.breaker_failures,
                "open_seconds": s.breaker_open_seconds,
                "open_max_seconds": s.breaker_open_max_seconds,
                "probe_seconds": s.breaker_probe_seconds,
                "llm_max_retries": s.llm.max_retries,
                "max_attempts": s.max_attempts,
            }
            with Stack(env, log_dir=log_dir) as stack:
                ports = []
                for _ in range(args.workers):
                    ports.append(free_port())
                    stack.env["AGENTQ_METRICS_PORT"] = str(ports[-1])
                    stack.start_worker(concurrency=args.concurrency)
                stack.env.pop("AGENTQ_METRICS_PORT")
                stack.start_reconciler(interval=2.0)
                client = Client()
                agent = client.create_agent(
                    f"outage-{uuid.uuid4().hex[:6]}",
                    max_concurrent_jobs=args.concurrency * args.workers,
                    rate_limit_per_minute=100_000,
                )
                dms = []
                for i in range(args.conversations):
                    conv = client.create_conversation("dm", title=f"outage {i}")
                    client.add_participant(conv.id, agent=agent.id)
                    dms.append((conv, client.add_participant(conv.id, user_id=f"user-{i}")))
                producers = Producers(client, dms, args.every)
                producers.start()
                say(f"load: {args.conversations} conversations, a message each ~{args.every:g} s")
                time.sleep(args.warmup)

                down_at = time.time()
                say(f"provider down ({args.fault}) for {args.duration:g} s")
                if args.fault == "refused":
                    llm.stop()
                else:
                    llm.control(error_rate=1.0)
                time.sleep(args.duration)
                if args.fault == "refused":
                    llm = FakeLLMServer(latency=args.latency, port=llm_port).start()
                    during = None  # refused: nothing reached the provider
                else:
                    llm.control(error_rate=0.0)
                    arrivals = llm.stats()["arrivals"]
                    during = sum(down_at <= t for t in arrivals)
                back_at = time.time()
                say("provider back")
                time.sleep(args.tail)
                producers.stop.set()
                producers.join()
                deadline = time.monotonic() + settings["open_max_seconds"] + 180
                while _unfinished() and time.monotonic() < deadline:
                    time.sleep(1.0)
                time.sleep(1.0)  # the last replies' metrics and events
                out = _figures(down_at, back_at)
                out["transitions_metric"] = _scrape(ports)
                out["messages_posted"] = len(producers.posted)
                out["messages_posted_during_outage"] = sum(
                    down_at <= t < back_at for t in producers.posted
                )
                out["provider_requests_during_outage"] = during
                out["settings"] = settings
                out["run"] = {
                    "fault": args.fault,
                    "duration_s": args.duration,
                    "conversations": args.conversations,
                    "workers": f"{args.workers} x {args.concurrency} threads",
                    "started": datetime.fromtimestamp(down_at, UTC).isoformat(),
                }
                return out
    finally:
        llm.stop()
        drop_database(db_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-d", "--duration", type=float, default=60.0, help="outage, seconds")
    parser.add_argument("-n", "--conversations", type=int, default=30)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between posts")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--tail", type=float, default=10.0, help="posting after recovery")
    parser.add_argument("--fault", choices=("refused", "500"), default="refused")
    parser.add_argument("--latency", type=float, default=0.2, help="fake LLM latency, s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        for name, value in out.items():
            if name == "circuit_events":
                print("circuit (s from the outage's start, open seconds):")
                for kind, at, seconds in value:
                    print(f"  {at:>7.1f}  {kind}" + (f"  {seconds:g}" if seconds else ""))
            else:
                print(f"{name:36} {value}")
    ok = not (out["jobs_failed"] or out["failed_attempts_charged_while_open"] or out["lost"])
    return 0 if ok and not (out["duplicated"] or out["reordered"] or out["overlapping"]) else 1


if __name__ == "__main__":
    sys.exit(main())
