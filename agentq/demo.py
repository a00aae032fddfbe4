"""`agentq demo`: a user and two agents talk, on the embedded default.

Needs no Redis or PostgreSQL server: it uses AGENTQ_DATABASE_URL and AGENTQ_REDIS_URL when
they are set, else a SQLite file in a temporary folder and a Redis it starts itself. Real
worker processes, the reconciler and the fake LLM run beside it, over real sockets; they
start as `agentq dev` starts them (agentq.dev.backing_services).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentq.schemas import JobOut, MessageOut

SCRIPT = [
    "@Ava where should I go for a long weekend in spring?",
    "@Milo and what would that cost for two people?",
    "@Ava is it better by train or by plane?",
    "@Milo how much should I keep aside for food?",
    "@Ava thanks! one last tip?",
    "@Milo and a last word on the budget?",
]


class Progress:
    """A one-line spinner with elapsed time while the demo waits (quiet when not a TTY)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self.started = time.monotonic()

    def _spin(self) -> None:
        frames = "|/-\\"
        i = 0
        while not self._stop.wait(0.1):
            if sys.stdout.isatty():
                elapsed = time.monotonic() - self.started
                print(f"\r  {frames[i % 4]} {self.label} {elapsed:5.1f}s", end="", flush=True)
            i += 1

    def __enter__(self) -> Progress:
        if not sys.stdout.isatty():
            print(f"  … {self.label}", flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if sys.stdout.isatty():
            print("\r" + " " * 70 + "\r", end="", flush=True)


def run_demo(turns: int = 4, latency: float = 0.4, workers: int = 2) -> int:
    from agentq.dev import backing_services
    from agentq.testing.stack import Stack

    turns = max(1, min(turns, len(SCRIPT)))
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="agentq-demo-"))
        env = backing_services(  # a line each: Redis, the fake LLM, the database
            stack,
            database_url=os.environ.get("AGENTQ_DATABASE_URL") or f"sqlite:///{work / 'agentq.db'}",
            redis_url=os.environ.get("AGENTQ_REDIS_URL") or None,
            latency=latency,
        )
        procs = stack.enter_context(Stack(env, log_dir=work / "logs"))
        with Progress(f"starting {workers} worker process(es) and the reconciler"):
            for _ in range(workers):
                procs.start_worker(concurrency=8)
            procs.start_reconciler(interval=1.0)
        return _converse(turns, work)
    return 0


def _converse(turns: int, work: Path) -> int:
    from agentq.client import Client

    client = Client()
    client.create_agent("Ava", role="travel guide", goal="suggest places to go")
    client.create_agent("Milo", role="budget planner", goal="keep trips affordable")
    conv = client.create_conversation("channel", title="weekend trip")
    client.add_participant(conv.id, agent="Ava")
    client.add_participant(conv.id, agent="Milo")
    user = client.add_participant(conv.id, user_id="sam", display_name="Sam")
    print(f"\nconversation {conv.id}: Sam, Ava and Milo\n")
    rows: list[tuple[str, float, tuple[float, float, float] | None]] = []
    for text in SCRIPT[:turns]:
        print(f"Sam:  {text}")
        started = time.monotonic()
        with Progress("waiting for the reply"):
            posted = client.post_message(conv.id, user.id, text)
            reply = client.wait_for_reply(posted.id, timeout=60)
        took = time.monotonic() - started
        job = client.get_job(reply.reply_to_job_id) if reply.reply_to_job_id else None
        agent = client.get_agent(job.agent_id).name if job else "?"
        print(f"{agent + ':':<5} {reply.content}")
        rows.append((agent, took, _timings(posted, job, reply) if job else None))
        print()
    print("turn  agent  total    debounce  queue    answer")
    for i, (agent, took, t) in enumerate(rows, 1):
        parts = " ".join(f"{v:6.0f}ms" for v in t) if t else ""
        print(f"{i:<5} {agent:<6} {took * 1000:6.0f}ms {parts}")
    total = sum(r[1] for r in rows)
    print("(answer: the LLM call and writing its reply)")
    print(f"\n{len(rows)} turns in {total:.2f}s; logs in {work / 'logs'}")
    return 0


def _timings(posted: MessageOut, job: JobOut, reply: MessageOut) -> tuple[float, float, float]:
    """debounce, queue and answer (ms) of a turn, from the times agentq recorded."""

    def ms(later: datetime | None, earlier: datetime | None) -> float:
        return (later - earlier).total_seconds() * 1000 if later and earlier else 0.0

    return (
        ms(job.created_at, posted.created_at),
        ms(job.started_at, job.created_at),
        ms(reply.created_at, job.started_at),
    )
