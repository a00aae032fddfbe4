"""A killed worker's job under a parked backlog (issue 16, item 2): 1,000 conversations wait
on a paused agent while another agent's job loses its worker to SIGKILL; the reconciler
(`agentq beat`) must re-drive that job within two of its intervals.

    .venv/bin/python ops/scripts/redrive.py                  # 1,000 parked, beat every 2 s
    .venv/bin/python ops/scripts/redrive.py -n 50 --wait 2 --json   # a smoke run

One stack on a fresh database (its own PostgreSQL server unless `--pg-admin`), its own
Redis, the fake LLM over HTTP, Celery worker processes and `agentq beat` every
`--interval` s (with the reconciler's per-pass line, logged at DEBUG, switched on):

1. agent P is paused; N DMs with it get one message each (every `--followup-every`-th a
   second one once the first has parked), posted through `agentq.Client` from 8 threads.
   Their windows close, the workers dispatch them, and each job parks the way the
   scheduler parks it: a waiting job, nothing scheduled for it.
2. agent H's one job is claimed by worker 1 and its call held by the fake LLM
   (`hold:S`); worker 2 is started beside it.
3. `--wait` s of that: commits/s of the run's database (`pg_stat_database`), tasks run,
   unacked tasks, and every reconciler pass (its seconds, pages and rows per kind).
4. worker 1's process group gets SIGKILL. The job's lease runs out (the last renewal's
   `lease_until`, at most `--lease` s after the kill); then a reconciler pass finds it
   and claims it again (its `agent.responding` event of attempt 2, stamped at the claim),
   worker 2 calls the LLM and writes the reply. Times are measured from the lease's
   expiry, since before it nothing may take the job (a worker that is only slow still
   holds it), and also from the kill.
5. P is resumed; every message must be answered once, in order: counts of messages,
   trigger links, jobs and replies, and `ops.chaos.check.check_database` (lost,
   duplicated, reordered, overlapping).

Exit 1 if the job was not claimed again within two intervals of its lease's expiry, or a
message was lost, duplicated or answered out of order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq` and `ops` in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import (  # noqa: E402
    HelpFormatter,
    Result,
    Run,
    Sampler,
    count_jobs,
    private_postgres,
    quiet_and_interruptible,
    say,
    start_order_inversions,
    started_stack,
    wait_for,
)
from ops.scripts.window_crowd import PROFILES, RATE_LIMIT, percentiles  # noqa: E402

#: `agentq beat --interval S`, as the CLI runs it, with the reconciler's per-pass line
#: (its seconds, pages and rows per kind: logged at DEBUG) switched on
BEAT = (
    "import logging, sys; "
    "logging.getLogger('agentq.ops.reconcile').setLevel(logging.DEBUG); "
    "from agentq.cli import main; "
    "sys.argv = ['agentq', 'beat', '--interval', sys.argv[1]]; main()"
)
PASS_LINE = "reconcile pass: "
OPEN = ("waiting", "active", "delayed")


@dataclass
class Redrive:
    """The killed worker's job, on the database's clock (seconds)."""

    lease_seconds: float
    interval: float
    kill_to_expiry: float | None = None
    #: lease expiry -> claimed again (its attempt-2 `agent.responding` event)
    expiry_to_claim: float | None = None
    #: lease expiry -> the new attempt's call started (a worker took it up: polled)
    expiry_to_start: float | None = None
    #: lease expiry -> its reply written
    expiry_to_reply: float | None = None
    kill_to_claim: float | None = None
    kill_to_reply: float | None = None
    #: who claimed it again: the reconciler pass that logged `advanced`
    reconciler_advanced: int = 0
    attempts: int = 0
    replies: int = 0

    def intervals(self, seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds / self.interval, 2)

    @property
    def ok(self) -> bool:
        return (
            self.expiry_to_claim is not None
            and self.expiry_to_claim <= 2 * self.interval
            and self.replies == 1
        )


@dataclass
class Outcome:
    parked: int
    messages: int
    parked_jobs: int
    redrive: Redrive
    #: commits etc. while N were parked and H's call held, and from the kill to the reply
    wait: dict[str, Any]
    after_kill: dict[str, Any]
    drain: dict[str, Any]
    drain_seconds: float | None
    #: reconciler passes: {phase: {"passes", "ms" percentiles, "max_pages", "max_rows"}}
    passes: dict[str, dict[str, Any]]
    jobs: dict[str, int]
    answered_once: int
    replies: int
    trigger_links: int
    conversations_in_order: int
    lost: int
    duplicated: int
    reordered: int
    overlapping: int
    unacked_while_parked: int
    #: autovacuum and autoanalyze runs in the run's database during the wait (their
    #: transactions count as commits too)
    autovacuum_while_parked: int
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


# --- the stack ---------------------------------------------------------------------------


def debug_beat(run: Run, interval: float) -> None:
    """Replace the stack's reconciler by `agentq beat` logging every pass."""
    run.stack.kill("reconciler", signal.SIGTERM)
    run.stack._spawn("reconciler", ["-c", BEAT, f"{interval:g}"])  # the Stack's own spawn


def seed(client: Any, agent_id: uuid.UUID, n: int, followup_every: int) -> list[uuid.UUID]:
    """N DMs with the agent, one message each, then a second one in every
    `followup_every`-th once the first has parked; returns the conversations."""

    def one(i: int) -> tuple[uuid.UUID, uuid.UUID]:
        conv = client.create_conversation("dm")
        client.add_participant(conv.id, agent=agent_id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        client.post_message(conv.id, user.id, f"question {i}")
        return conv.id, user.id

    with ThreadPoolExecutor(8) as pool:
        convs = list(pool.map(one, range(n)))
    wait_for(f"{n} messages parked", lambda: linked(agent_id) >= n, 300)
    more = convs[::followup_every] if followup_every else []
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: client.post_message(c[0], c[1], "and another"), more))
    wait_for(f"{n + len(more)} messages parked", lambda: linked(agent_id) >= n + len(more), 300)
    return [c for c, _ in convs]


def linked(agent_id: uuid.UUID) -> int:
    """The agent's messages that have a job (their window closed and was dispatched)."""
    from sqlalchemy import func, select

    from agentq.store.models import MessageJob
    from agentq.store.session import reader

    with reader() as s:
        query = select(func.count()).where(
            MessageJob.agent_id == agent_id, MessageJob.status == "trigger"
        )
        return int(s.execute(query).scalar_one())


def job_of(agent_id: uuid.UUID) -> Any:
    from sqlalchemy import select

    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        return s.execute(select(Job).where(Job.agent_id == agent_id)).scalars().first()


def claimed_at(job_id: uuid.UUID, attempt: int) -> datetime | None:
    """When the job's claim for `attempt` was made (its `agent.responding` event)."""
    from sqlalchemy import select

    from agentq.store.models import Event
    from agentq.store.session import reader

    with reader() as s:
        events = s.execute(select(Event).where(Event.type == "agent.responding")).scalars()
        for e in events:
            if e.payload.get("job_id") == str(job_id) and e.payload.get("attempt") == attempt:
                return e.created_at
    return None


def reply_at(job_id: uuid.UUID) -> tuple[int, datetime | None]:
    """(replies the job wrote, when the first was written)."""
    from sqlalchemy import select

    from agentq.store.models import Message
    from agentq.store.session import reader

    with reader() as s:
        rows = s.execute(select(Message.created_at).where(Message.reply_to_job_id == job_id)).all()
    return len(rows), (rows[0][0] if rows else None)


def autovacuum_runs(run: Run) -> int:
    """Autovacuum and autoanalyze runs on the run's tables so far."""
    import psycopg

    with psycopg.connect(run.db_url.replace("+psycopg", "", 1)) as db:
        row = db.execute(
            "SELECT sum(autovacuum_count + autoanalyze_count) FROM pg_stat_user_tables"
        ).fetchone()
    return int(row[0] or 0) if row else 0


# --- the kill ----------------------------------------------------------------------------


def kill_and_watch(run: Run, job_id: uuid.UUID, lease: float, interval: float) -> Redrive:
    """SIGKILL worker 1 (running the job's call) and time its re-drive."""
    from agentq.clock import utcnow

    out = Redrive(lease_seconds=lease, interval=interval)
    before = job_of_id(job_id)
    killed = utcnow()
    run.stack.kill("worker1")  # SIGKILL to its process group
    say(f"killed worker 1 (job attempt {before.attempts}, lease token {before.lease_token})")
    expiry = job_of_id(job_id).lease_until  # its last renewal: nobody renews it any more
    out.kill_to_expiry = (expiry - killed).total_seconds()
    timeout = lease + 5 * interval + 30
    try:
        wait_for(
            "the job claimed again",
            lambda: job_of_id(job_id).lease_token > before.lease_token,
            timeout,
            every=0.02,
        )
        claim = claimed_at(job_id, before.attempts + 1)
        if claim is not None:
            out.expiry_to_claim = (claim - expiry).total_seconds()
            out.kill_to_claim = (claim - killed).total_seconds()
        wait_for(
            "the new attempt started",
            lambda: job_of_id(job_id).attempts > before.attempts,
            timeout,
            every=0.02,
        )
        out.expiry_to_start = (utcnow() - expiry).total_seconds()
        wait_for("its reply", lambda: reply_at(job_id)[0] > 0, timeout, every=0.02)
    except RuntimeError as exc:
        say(str(exc))
    out.replies, written = reply_at(job_id)
    if written is not None:
        out.expiry_to_reply = (written - expiry).total_seconds()
        out.kill_to_reply = (written - killed).total_seconds()
    out.attempts = job_of_id(job_id).attempts
    return out


def job_of_id(job_id: uuid.UUID) -> Any:
    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


# --- what the reconciler did -------------------------------------------------------------


def reconciler_passes(log: Path, phases: list[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """The reconciler's passes by phase (`phases`: (name, start as epoch seconds), in order):
    how many, their milliseconds, the most pages and rows a kind read in one."""
    by_phase: dict[str, list[dict[str, Any]]] = defaultdict(list)
    advanced: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message = str(record.get("message", ""))
        at = datetime.fromisoformat(record["ts"]).timestamp() if "ts" in record else 0.0
        phase = next((name for name, start in reversed(phases) if at >= start), None)
        if phase is None:
            continue
        if message.startswith(PASS_LINE):
            by_phase[phase].append(json.loads(message[len(PASS_LINE) :]))
        elif message.startswith("reconciled: ") and "'advanced': 0" not in message:
            advanced[phase] += 1
    out: dict[str, dict[str, Any]] = {}
    for name, _ in phases:
        passes = by_phase.get(name, [])
        pages: dict[str, int] = {}
        rows: dict[str, int] = {}
        for p in passes:
            for kind, n in p["pages"].items():
                pages[kind] = max(pages.get(kind, 0), n)
            for kind, n in p["rows"].items():
                rows[kind] = max(rows.get(kind, 0), n)
        out[name] = {
            "passes": len(passes),
            "ms": percentiles([p["seconds"] * 1000 for p in passes]),
            "max_pages": pages,
            "max_rows": rows,
            "passes_that_advanced": advanced[name],
        }
    return out


# --- the checks --------------------------------------------------------------------------


def answers(agent_id: uuid.UUID) -> dict[str, int]:
    """Per message of the agent's conversations: answered exactly once (one trigger link,
    to a completed job that wrote one reply); conversations whose replies follow their
    triggers in order."""
    from sqlalchemy import select

    from agentq.store.models import Job, Message, MessageJob
    from agentq.store.session import reader

    with reader() as s:
        links = s.execute(
            select(MessageJob.message_id, MessageJob.job_id).where(
                MessageJob.agent_id == agent_id, MessageJob.status == "trigger"
            )
        ).all()
        jobs = dict(s.execute(select(Job.id, Job.status).where(Job.agent_id == agent_id)).all())
        convs = {
            c for (c,) in s.execute(select(Job.conversation_id).where(Job.agent_id == agent_id))
        }
        msgs = s.execute(
            select(
                Message.id,
                Message.conversation_id,
                Message.seq,
                Message.role,
                Message.reply_to_job_id,
            )
            .where(Message.conversation_id.in_(convs))
            .order_by(Message.conversation_id, Message.seq)
        ).all()
    jobs_of: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for message_id, job_id in links:
        jobs_of[message_id].append(job_id)
    replies_of = Counter(m.reply_to_job_id for m in msgs if m.reply_to_job_id is not None)
    users = [m for m in msgs if m.role == "user"]
    once = sum(
        1
        for m in users
        if len(jobs_of[m.id]) == 1
        and jobs.get(jobs_of[m.id][0]) == "completed"
        and replies_of[jobs_of[m.id][0]] == 1
    )
    # In order: each reply comes after every message of its job, and the replies come in
    # the order of their jobs' last trigger.
    by_conv: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for m in msgs:
        by_conv[m.conversation_id].append(m)
    seq_of = {m.id: m.seq for m in msgs}
    last_trigger: dict[uuid.UUID, int] = {}
    for message_id, job_id in links:
        last_trigger[job_id] = max(last_trigger.get(job_id, 0), seq_of.get(message_id, 0))
    in_order = 0
    for ms in by_conv.values():
        replies = [m for m in ms if m.reply_to_job_id is not None]
        after = all(m.seq > last_trigger.get(m.reply_to_job_id, 1 << 30) for m in replies)
        keys = [last_trigger.get(m.reply_to_job_id, 0) for m in replies]
        in_order += after and keys == sorted(keys)
    return {
        "messages": len(users),
        "answered_once": once,
        "replies": sum(replies_of.values()),
        "trigger_links": len(links),
        "conversations": len(by_conv),
        "in_order": in_order,
    }


# --- the run -----------------------------------------------------------------------------


def scenario(run: Run, args: argparse.Namespace) -> Outcome:
    from agentq.client import Client
    from ops.chaos.check import check_database, wait_settled

    client = Client()
    debug_beat(run, args.interval)
    tag = uuid.uuid4().hex[:8]
    p = client.create_agent(
        f"paused-{tag}", max_concurrent_jobs=args.slots, rate_limit_per_minute=args.rate
    )
    h = client.create_agent(f"held-{tag}", max_concurrent_jobs=1, rate_limit_per_minute=args.rate)
    client.pause_agent(p.id)
    started = time.monotonic()
    seed(client, p.id, args.conversations, args.followup_every)
    parked_jobs = count_jobs(p.id)
    say(f"parked: {dict(parked_jobs)} on the paused agent ({time.monotonic() - started:.0f}s)")

    hold = args.wait + args.lease + 120
    run.llm.control(script=[f"hold:{hold:g}"])
    conv, user = client.start_session(h.id, "held-user")
    client.post_message(conv.id, user.id, "the one whose worker dies")
    wait_for("H's call held", lambda: run.llm.stats()["in_flight"] >= 1, 60, every=0.05)
    job = job_of(h.id)
    say(f"H's call held on worker 1 (job {job.id}); starting worker 2")
    run.stack.start_worker(concurrency=args.concurrency, name="worker2")

    sampler = Sampler(run, args.every)
    sampler.start()
    sampler.restart_clock("wait")
    phases = [("wait", time.time())]
    say(f"waiting {args.wait:g}s with {args.conversations} conversations parked")
    maintenance = autovacuum_runs(run)
    time.sleep(args.wait)
    maintenance = autovacuum_runs(run) - maintenance
    import redis

    unacked = int(redis.Redis.from_url(run.env["AGENTQ_REDIS_URL"]).hlen("unacked"))

    sampler.restart_clock("kill")
    phases.append(("kill", time.time()))
    redrive = kill_and_watch(run, job.id, args.lease, args.interval)
    say(
        f"re-driven: claimed {redrive.expiry_to_claim}s after the lease's expiry "
        f"({redrive.intervals(redrive.expiry_to_claim)} intervals), reply after "
        f"{redrive.expiry_to_reply}s"
    )

    sampler.restart_clock("drain")
    phases.append(("drain", time.time()))
    client.resume_agent(p.id)
    try:
        drain: float | None = wait_for(
            "every parked message answered",
            lambda: sum(count_jobs(p.id)[k] for k in OPEN) == 0,
            args.drain_timeout,
            every=0.25,
        )
    except RuntimeError as exc:
        say(str(exc))
        drain = None
    say(f"drained in {drain}s; settling")
    wait_settled(30.0, stable_for=2)
    sampler.stop()
    phases.append(("after", time.time()))
    passes = reconciler_passes(run.log_dir / "reconciler.log", phases)
    passes.pop("after", None)
    redrive.reconciler_advanced = passes["kill"]["passes_that_advanced"]
    found = check_database()
    counts = answers(p.id)
    # The drain's totals (commits, tasks) as backlog.py figures them.
    totals = Result(
        scenario="redrive",
        conversations=args.conversations,
        waited_seconds=args.wait,
        drain_seconds=drain,
        answered=counts["answered_once"],
        expected=counts["messages"],
        lost=found.lost,
        duplicated=found.duplicated,
        reordered=found.reordered,
        overlapping=found.overlapping,
        order_inversions=start_order_inversions(p.id),
        samples=sampler.samples,
    )
    out = Outcome(
        parked=args.conversations,
        messages=counts["messages"],
        parked_jobs=parked_jobs["waiting"],
        redrive=redrive,
        wait=totals.totals("wait"),
        after_kill=totals.totals("kill"),
        drain=totals.totals("drain"),
        drain_seconds=None if drain is None else round(drain, 2),
        passes=passes,
        jobs=dict(count_jobs(p.id)),
        answered_once=counts["answered_once"],
        replies=counts["replies"],
        trigger_links=counts["trigger_links"],
        conversations_in_order=counts["in_order"],
        lost=found.lost,
        duplicated=found.duplicated,
        reordered=found.reordered,
        overlapping=found.overlapping,
        unacked_while_parked=unacked,
        autovacuum_while_parked=maintenance,
    )
    out.checks = {
        "claimed again within two intervals of the lease's expiry": redrive.ok,
        "the killed job answered once": redrive.replies == 1,
        "every parked message answered exactly once": counts["answered_once"]
        == counts["messages"]
        == counts["trigger_links"],
        "every conversation in order": counts["in_order"] == args.conversations,
        "nothing lost, duplicated, reordered or overlapping": found.lost
        == found.duplicated
        == found.reordered
        == found.overlapping
        == 0,
    }
    return out


def report_lines(o: Outcome) -> list[str]:
    r = o.redrive
    w, k, d = o.wait, o.after_kill, o.drain

    def s(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}s ({r.intervals(x)} intervals)"

    lines = [
        f"# redrive: {o.parked} conversations parked on a paused agent ({o.messages} "
        f"messages, {o.parked_jobs} waiting jobs), one job's worker SIGKILLed",
        f"reconciler every {r.interval:g}s, job lease {r.lease_seconds:g}s",
        "",
        "## the killed worker's job (database clock; from the lease's expiry: before it the "
        "job is still its worker's)",
        f"kill -> lease expiry        {r.kill_to_expiry:.2f}s" if r.kill_to_expiry else "",
        f"lease expiry -> claimed     {s(r.expiry_to_claim)}",
        f"lease expiry -> call begun  {s(r.expiry_to_start)}",
        f"lease expiry -> reply       {s(r.expiry_to_reply)}",
        f"kill -> claimed             {s(r.kill_to_claim)}",
        f"kill -> reply               {s(r.kill_to_reply)}",
        f"attempts {r.attempts}, replies {r.replies}, reconciler passes that advanced it "
        f"{r.reconciler_advanced}",
        "",
        "## cost while they wait",
        f"wait {w['seconds']}s: {w['commits']} commits ({w['commits_per_s']}/s), "
        f"{w['rollbacks']} read-only, tasks {w['tasks']}, unacked at the end "
        f"{o.unacked_while_parked}, autovacuum/analyze runs {o.autovacuum_while_parked}, "
        f"max conns {w['max_connections']}, conn errors {w['conn_errors']}",
        f"kill->reply {k['seconds']}s: {k['commits']} commits ({k['commits_per_s']}/s), "
        f"tasks {k['tasks']}",
    ]
    for phase, p in o.passes.items():
        ms = p["ms"]
        lines.append(
            f"reconciler passes, {phase}: {p['passes']}, ms p50 {ms['p50']} p99 {ms['p99']} "
            f"max {ms['max']}; most pages a pass {p['max_pages']}, "
            f"most rows {p['max_rows']}"
        )
    lines += [
        "",
        "## after resume",
        f"drained in {o.drain_seconds}s ({d['commits']} commits, tasks {d['tasks']})",
        f"jobs {o.jobs}; {o.answered_once}/{o.messages} messages answered exactly once, "
        f"{o.trigger_links} trigger links, {o.replies} replies, "
        f"{o.conversations_in_order}/{o.parked} conversations in order",
        f"lost {o.lost}, duplicated {o.duplicated}, reordered {o.reordered}, "
        f"overlapping {o.overlapping}",
        "",
        *(f"{'ok  ' if ok else 'FAIL'} {name}" for name, ok in o.checks.items()),
    ]
    return [line for line in lines if line is not None]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-n", "--conversations", type=int, default=1000, help="parked conversations")
    p.add_argument(
        "--followup-every",
        type=int,
        default=10,
        help="a second message in every k-th conversation once the first parked (0: none)",
    )
    p.add_argument("--wait", type=float, default=20.0, help="seconds parked before the kill")
    p.add_argument("--interval", type=float, default=2.0, help="the reconciler's interval")
    p.add_argument("--lease", type=float, default=3.0, help="AGENTQ_JOB_LEASE_SECONDS")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--concurrency", type=int, default=20, help="threads per worker")
    p.add_argument("--slots", type=int, default=10, help="the paused agent's max_concurrent_jobs")
    p.add_argument(
        "--rate",
        type=int,
        default=RATE_LIMIT,
        help="the agents' rate_limit_per_minute (the default never holds: the drain is "
        "bounded by --slots, not by the rate limit)",
    )
    p.add_argument("--llm-latency", type=float, default=0.05, help="fake LLM seconds per call")
    p.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait")
    p.add_argument("--pg-admin", default=None, help="an existing server's admin URL")
    p.add_argument("--max-connections", type=int, default=100, help="of the private server")
    p.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.conversations < 1 or args.wait <= 0 or args.interval <= 0 or args.lease < 1:
        p.error("--conversations, --wait and --interval must be positive, --lease at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    hold = args.wait + args.lease + 120
    env = {
        "AGENTQ_RECONCILE_INTERVAL_SECONDS": f"{args.interval:g}",
        "AGENTQ_JOB_LEASE_SECONDS": f"{args.lease:g}",
        "AGENTQ_LOG_FORMAT": "json",
        "AGENTQ_MODEL_PROFILES": PROFILES,  # caps that let --rate never hold
        # the held call must outlast its HTTP timeout and attempt deadline
        "LLM_TIMEOUT": str(hold + 60),
        "LLM_ATTEMPT_DEADLINE": str(hold + 120),
    }
    logs = args.log_dir or Path(tempfile.mkdtemp(prefix="agentq-redrive-"))
    env["AGENTQ_BEAT_HEARTBEAT_FILE"] = str(logs / "beat.heartbeat")
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres(args.max_connections))
        say(f"starting the stack (worker 1 x {args.concurrency}), logs in {logs}")
        with started_stack(
            admin,
            workers=1,
            concurrency=args.concurrency,
            llm_latency=args.llm_latency,
            env=env,
            log_dir=logs,
        ) as run:
            outcome = scenario(run, args)
    if args.json:
        print(json.dumps({**asdict(outcome), "ok": outcome.ok}, default=str))
    else:
        print("\n".join(report_lines(outcome)))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
