"""Timers that fire on time in crowds (issue 16, item 4): many debounce windows due
within the same few milliseconds, and how late each fires.

    .venv/bin/python ops/scripts/window_crowd.py                       # 20 and 200, both modes
    .venv/bin/python ops/scripts/window_crowd.py --sizes 5 --agents shared --json

For each size N and agent mode (`shared`: one agent answers all N conversations; `each`:
one agent per conversation) it makes N DMs and posts one message to each so that every
window closes at the same instant: conversation i is posted `gap` seconds after i-1 and
its debounce is `gap` shorter, so that last_message_at + debounce is the same for all (the
real spread of the due times, from the database, is printed as `spread`). The stack is
real (a fresh database, Redis, Celery worker processes, the reconciler, the fake LLM).

Figures per window, from the database once all are answered:

- fire error = the job's `created_at` (the dispatch that turned the window into a job)
  minus the window's due time (`agentq.turn.debounce.due` of the user message's
  `created_at` and the conversation's settings);
- start lag = the job's `started_at` (its claim) minus the due time;

and, from the workers' logs, how long each `agentq.dispatch` task ran ("succeeded in"),
which splits the fire error into time spent running and time spent before running (the
ETA timer, the queue, the pool). Since the timer loops (agentq.runtime.timers) a window
due later than their poll is fired by a loop, with no task: then "runs" is 0 and the
column shows "-". p50/p95/p99/max go to stdout (a table, or `--json`);
progress to stderr. The machine's other load shows in these figures: run it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

#: a default profile whose caps let one agent run a whole crowd at once
RATE_LIMIT = 1_000_000
PROFILES = json.dumps(
    {"default": {"max_concurrent_jobs": 1000, "rate_limit_per_minute": RATE_LIMIT}}
)
DISPATCH_RAN = re.compile(r"Task agentq\.dispatch\[[0-9a-f-]+\] succeeded in ([0-9.e-]+)s")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and max, rounded to 0.1."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]

    return {
        "p50": round(rank(50), 1),
        "p95": round(rank(95), 1),
        "p99": round(rank(99), 1),
        "max": round(ordered[-1], 1),
    }


@dataclass
class Round:
    size: int
    agents: str
    #: max - min of the windows' due times, ms (how tight the crowd was)
    spread_ms: float
    fire_ms: dict[str, float]
    start_ms: dict[str, float]
    dispatch_run_ms: dict[str, float]
    #: agentq.dispatch tasks run for the crowd (one per window: none fired early and re-armed)
    dispatch_runs: int
    answered: int


def _ms(a: datetime, b: datetime) -> float:
    return (a - b).total_seconds() * 1000


class DispatchLog:
    """How long each agentq.dispatch ran, from the workers' logs, read incrementally."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._offsets: dict[Path, int] = {}
        self.read()

    def read(self) -> list[float]:
        out: list[float] = []
        for path in sorted(self.log_dir.glob("worker*.log")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self._offsets[path] = self._offsets.get(path, 0) + end
            text = chunk[:end].decode(errors="replace")
            out += [float(m.group(1)) * 1000 for m in DISPATCH_RAN.finditer(text)]
        return out


def crowd(
    client: Any, n: int, mode: str, debounce: float, gap: float, posters: int, log: DispatchLog
) -> Round:
    """One crowd of `n` windows due at the same instant; waits until all are answered."""
    from sqlalchemy import select

    from agentq.store.models import Conversation, Job, Message
    from agentq.store.session import reader
    from agentq.turn import debounce as window

    tag = uuid.uuid4().hex[:6]
    # Limits that never hold a job back: what is measured is the timers, not parking.
    limits = {"rate_limit_per_minute": RATE_LIMIT}
    shared = (
        client.create_agent(f"crowd-{tag}", max_concurrent_jobs=n, **limits)
        if mode == "shared"
        else None
    )

    def make(i: int) -> tuple[Any, Any]:
        agent = shared or client.create_agent(f"crowd-{tag}-{i}", max_concurrent_jobs=1, **limits)
        # Posted i * gap after the first, due (n - 1 - i) * gap sooner: all due together.
        d = debounce + (n - 1 - i) * gap
        conv = client.create_conversation(
            "dm", settings={"debounce_seconds": d, "max_wait_seconds": d + 60}
        )
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        return conv.id, user.id

    with ThreadPoolExecutor(8) as pool:
        convs = list(pool.map(make, range(n)))
    log.read()  # the dispatches of this crowd only
    t0 = time.monotonic() + 0.5

    def post(k: int) -> None:
        for i in range(k, n, posters):
            time.sleep(max(0.0, t0 + i * gap - time.monotonic()))
            client.post_message(convs[i][0], convs[i][1], f"crowd {i}")

    threads = [threading.Thread(target=post, args=(k,)) for k in range(posters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [c for c, _ in convs]

    def done() -> int:
        with reader() as s:
            return len(
                s.scalars(
                    select(Job.id).where(Job.conversation_id.in_(ids), Job.status == "completed")
                ).all()
            )

    wait_for(f"{n} replies", lambda: done() >= n, 300, every=0.25)
    with reader() as s:
        rows = s.execute(
            select(Conversation.settings, Message.created_at, Job.created_at, Job.started_at)
            .join(Message, Message.conversation_id == Conversation.id)
            .join(Job, Job.trigger_message_id == Message.id)
            .where(Conversation.id.in_(ids), Message.role == "user")
        ).all()
    dues = [window.due(settings, posted, posted) for settings, posted, _, _ in rows]
    fire = [_ms(created, due) for due, (_, _, created, _) in zip(dues, rows, strict=True)]
    start = [
        _ms(started, due) for due, (_, _, _, started) in zip(dues, rows, strict=True) if started
    ]
    time.sleep(1.0)  # the last dispatch's log line
    ran = log.read()
    return Round(
        size=n,
        agents=mode,
        spread_ms=round(_ms(max(dues), min(dues)), 1),
        fire_ms=percentiles(fire),
        start_ms=percentiles(start),
        dispatch_run_ms=percentiles(ran),
        dispatch_runs=len(ran),
        answered=done(),
    )


def table(rounds: list[Round]) -> list[str]:
    def cols(p: dict[str, float]) -> str:
        return "".join(f"{p[k]:>8.1f}" for k in ("p50", "p95", "p99", "max"))

    out = [
        f"{'size':>5} {'agents':<7}{'spread':>8} | {'fire error ms: p50':>18}"
        f"{'p95':>8}{'p99':>8}{'max':>8} | {'start lag p50':>14}{'p95':>8}{'p99':>8}"
        f"{'max':>8} | {'dispatch ran p50':>17}{'p99':>8}{'max':>8}{'runs':>6} | answered",
    ]
    for r in rounds:
        d = r.dispatch_run_ms
        out.append(
            f"{r.size:>5} {r.agents:<7}{r.spread_ms:>8.1f} | {r.fire_ms['p50']:>18.1f}"
            f"{r.fire_ms['p95']:>8.1f}{r.fire_ms['p99']:>8.1f}{r.fire_ms['max']:>8.1f} | "
            f"{r.start_ms['p50']:>14.1f}{r.start_ms['p95']:>8.1f}{r.start_ms['p99']:>8.1f}"
            f"{r.start_ms['max']:>8.1f} | "
            + (
                f"{d['p50']:>17.1f}{d['p99']:>8.1f}{d['max']:>8.1f}"
                if r.dispatch_runs
                else f"{'-':>17}{'-':>8}{'-':>8}"
            )
            + f"{r.dispatch_runs:>6}"
            f" | {r.answered}/{r.size}"
        )
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--sizes", default="20,200", help="crowd sizes, comma-separated")
    p.add_argument(
        "--agents", choices=("shared", "each", "both"), default="both", help="agent per crowd"
    )
    p.add_argument("--debounce", type=float, default=1.0, help="seconds (the last window's)")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between posts")
    p.add_argument("--posters", type=int, default=4, help="threads posting")
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=25, help="threads per worker")
    p.add_argument(
        "--llm-workers",
        type=int,
        default=0,
        help="processes for the LLM queue alone (the --workers then work the control queue)",
    )
    p.add_argument("--llm-latency", type=float, default=0.01, help="fake LLM seconds per call")
    p.add_argument(
        "--pg-admin", default=None, help="an existing server's admin URL; none: a server of its own"
    )
    p.add_argument(
        "--warmup", type=int, default=10, help="size of a first crowd not reported (0: none)"
    )
    p.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes: {args.sizes!r} is not a comma-separated list of integers")
    if (
        not args.size_list
        or min(args.size_list) < 1
        or args.gap < 0
        or args.posters < 1
        or args.warmup < 0
    ):
        p.error("--sizes must be positive, --gap and --warmup >= 0, --posters >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    modes = ["shared", "each"] if args.agents == "both" else [args.agents]
    rounds: list[Round] = []
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres())
        say(f"starting the stack ({args.workers} workers x {args.concurrency} threads)")
        run = stack.enter_context(
            started_stack(
                admin,
                workers=args.workers,
                concurrency=args.concurrency,
                llm_workers=args.llm_workers,
                llm_latency=args.llm_latency,
                env={"AGENTQ_MODEL_PROFILES": PROFILES},
                log_dir=args.log_dir,
            )
        )
        from agentq.client import Client

        client = Client()
        log = DispatchLog(run.log_dir)
        if args.warmup:  # the workers' first tasks open their connections: not measured
            say(f"warm-up crowd of {args.warmup}")
            crowd(client, args.warmup, "each", args.debounce, args.gap, args.posters, log)
        for n in args.size_list:
            for mode in modes:
                say(f"crowd of {n}, agents {mode}: posting")
                r = crowd(client, n, mode, args.debounce, args.gap, args.posters, log)
                say(
                    f"  spread {r.spread_ms} ms, fire error p50 {r.fire_ms['p50']} "
                    f"p99 {r.fire_ms['p99']} max {r.fire_ms['max']} ms"
                )
                rounds.append(r)
    if args.json:
        print(json.dumps({"rounds": [r.__dict__ for r in rounds]}))
    else:
        print("\n".join(table(rounds)))
    return 0 if all(r.answered == r.size for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
