"""The chaos runner: real load, injected faults, and anomalies counted from the database.

    python -m ops.chaos --messages 300 --conversations 30     # the CI-sized run
    python -m ops.chaos --messages 2000 --conversations 200   # the big one

It starts everything it breaks: a fresh PostgreSQL database (or AGENTQ_DATABASE_URL), its
own `redis-server` (so FLUSHALL and restarts never touch a shared Redis), the fake LLM,
several Celery worker processes and the reconciler. Producer threads post messages in
random bursts while a fault thread SIGKILLs workers (and starts new ones), flushes and
restarts Redis, sends the provider into error storms (500, 429 with Retry-After, 529) and
slow spells past the HTTP timeout, and optionally restarts PostgreSQL. Then it waits for
quiescence and checks, from the database alone, that

- every accepted message is covered by exactly one finished job per responding agent
  (completed with its reply, or failed with a visible notice): else `lost` / `duplicated`,
- replies of a conversation come in the order of their triggers: else `reordered`,
- no two jobs of a conversation ran at the same time: else `overlapping`,
- `message_jobs` links agree with their jobs and messages: else `inconsistent`.

It also looks for the API key and message bodies in snapshots of everything in Redis and
in every worker log (`leaks`). `failed_visible` counts jobs that failed after their
retries, each with its notice in the conversation: expected under error storms, not an
anomaly.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import func, select

from agentq.store.scratch import create_database, drop_database

if TYPE_CHECKING:
    from agentq.store.models import Job, Message

#: where the runner may create and drop its own database (a local server, trust auth)
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
#: a key the run gives the provider, then looks for in logs and task messages
CHAOS_API_KEY = "sk-chaos-SECRET-7f3a9c1e5b"
#: HTTP timeout of one provider request during the run; the slow spells hang past it
LLM_TIMEOUT = 2.0

#: every message body carries this, so that the run can look for bodies where none belong
BODY_MARKER = "where should I travel"

#: settings that make failures and recovery quick enough to watch many of them in a run
CHAOS_ENV = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.3",
    "AGENTQ_MAX_WAIT_SECONDS": "1.5",
    # longer than one attempt can take (LLM_MAX_RETRIES+1 requests of LLM_TIMEOUT each)
    "AGENTQ_JOB_LEASE_SECONDS": "15",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "1",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "1",
    "AGENTQ_RETRY_BACKOFF_SECONDS": "0.5",
    "AGENTQ_RETRY_BACKOFF_MAX_SECONDS": "2",
    "LLM_PROVIDER": "openai",
    "LLM_TIMEOUT": str(LLM_TIMEOUT),
    "LLM_MAX_RETRIES": "3",
    "LLM_BACKOFF_BASE": "0.1",
    "LLM_BACKOFF_MAX": "2",
    "LLM_API_KEY": CHAOS_API_KEY,
}

log = logging.getLogger(__name__)


@dataclass
class ChaosConfig:
    messages: int = 300
    conversations: int = 30
    #: fraction of conversations that are channels with two agents (the rest are DMs)
    channel_fraction: float = 0.2
    workers: int = 3
    worker_concurrency: int = 20
    #: seconds over which the producers spread the messages
    duration: float = 30.0
    producers: int = 4
    #: seconds between SIGKILLs of a random worker (0: none)
    kill_every: float = 5.0
    flushall: bool = True
    redis_restart: bool = True
    storms: bool = True
    slow: bool = True
    #: restart the machine's PostgreSQL cluster: it is shared, so off unless asked for
    pg_restart: bool = False
    #: how long to wait for the system to settle after the load
    settle_timeout: float = 300.0
    seed: int | None = None
    database_url: str | None = None
    keep_db: bool = False
    log_dir: str | None = None
    llm_latency: float = 0.2
    llm_jitter: float = 0.4


@dataclass
class Anomalies:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    overlapping: int = 0
    inconsistent: int = 0
    failed_visible: int = 0
    completed_jobs: int = 0
    accepted_messages: int = 0
    #: a few examples per kind, for whoever has to debug a non-zero count
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(text)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.reordered or self.overlapping or self.inconsistent
        )


@dataclass
class ChaosReport:
    config: dict[str, Any]
    anomalies: Anomalies
    kills: int = 0
    worker_restarts: int = 0
    unexpected_worker_exits: int = 0
    faults: list[str] = field(default_factory=list)
    post_errors: int = 0
    load_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False
    #: seconds from FLUSHALL until everything accepted before it was finished
    flushall_recovery_seconds: float | None = None
    #: seconds from FLUSHALL until the first job finished after it
    flushall_first_completion_seconds: float | None = None
    redis_restart_recovery_seconds: float | None = None
    llm_requests: dict[str, int] = field(default_factory=dict)
    #: where the API key or a message body showed up (broker messages, worker logs)
    leaks: list[str] = field(default_factory=list)
    redis_scans: int = 0
    log_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.settled and self.anomalies.ok and not self.leaks

    def lines(self) -> list[str]:
        a = self.anomalies
        c = self.config
        out = [
            f"messages          {a.accepted_messages} accepted over {c['conversations']} "
            f"conversations ({self.post_errors} post errors retried)",
            f"jobs              {a.completed_jobs} completed, {a.failed_visible} failed visibly",
            f"kills             {self.kills} SIGKILLs, {self.worker_restarts} workers restarted, "
            f"{self.unexpected_worker_exits} unexpected exits",
            f"faults            {', '.join(self.faults) or 'none'}",
            f"llm requests      {json.dumps(self.llm_requests, sort_keys=True)}",
            f"load              {self.load_seconds:.1f}s, settled "
            f"{'in ' + format(self.settle_seconds, '.1f') + 's' if self.settled else 'NEVER'}",
            f"flushall recovery {_secs(self.flushall_recovery_seconds)} (first completion after "
            f"flush: {_secs(self.flushall_first_completion_seconds)})",
            f"redis restart     recovered in {_secs(self.redis_restart_recovery_seconds)}",
            f"secrets/bodies    {len(self.leaks)} leaks ({self.redis_scans} broker snapshots "
            "and every worker log searched)",
            f"lost              {a.lost}",
            f"duplicated        {a.duplicated}",
            f"reordered         {a.reordered}",
            f"overlapping       {a.overlapping}",
            f"inconsistent      {a.inconsistent}",
            f"failed_visible    {a.failed_visible}",
        ]
        out.extend(f"  leak: {leak}" for leak in self.leaks[:5])
        for kind, examples in a.examples.items():
            for ex in examples:
                out.append(f"  {kind}: {ex}")
        out.append(f"logs              {self.log_dir}")
        out.append("RESULT            " + ("PASS" if self.ok else "FAIL"))
        return out

    def as_dict(self) -> dict[str, Any]:
        self.anomalies.examples = dict(self.anomalies.examples)
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"


# -- environment -----------------------------------------------------------------------------


def restart_postgresql() -> None:
    """Restart the machine's PostgreSQL cluster (every database on it, shared or not)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
    )


# -- the setup: conversations to post into --------------------------------------------------


@dataclass
class Target:
    conversation_id: uuid.UUID
    author_id: uuid.UUID
    agents: list[str]


def make_targets(cfg: ChaosConfig, rng: random.Random) -> list[Target]:
    from agentq.client import Client

    client = Client()
    run = uuid.uuid4().hex[:6]
    targets = []
    for i in range(cfg.conversations):
        if rng.random() < cfg.channel_fraction:
            names = [f"chaos{run}c{i}a", f"chaos{run}c{i}b"]
            conv = client.create_conversation("channel")
            for n, role in zip(names, ("travel guide", "chef"), strict=True):
                agent = client.create_agent(n, role=role, goal=f"help with {role} questions")
                client.add_participant(conv.id, agent=agent.id)
        else:
            names = [f"chaos{run}d{i}"]
            agent = client.create_agent(names[0], role="assistant")
            conv = client.create_conversation("dm")
            client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"chaos-user-{i}")
        targets.append(Target(conv.id, user.id, names))
    return targets


# -- load ------------------------------------------------------------------------------------


class Producers:
    """Threads posting `cfg.messages` messages in random bursts over `cfg.duration`."""

    def __init__(self, cfg: ChaosConfig, targets: list[Target], rng: random.Random) -> None:
        self.cfg = cfg
        self.targets = targets
        self.errors = 0
        self._lock = threading.Lock()
        # Plan every message up front: (conversation, burst), so the count is exact.
        plan: list[list[Target]] = []
        left = cfg.messages
        while left > 0:
            n = min(left, rng.choice((1, 1, 2, 3, 5)))
            plan.append([rng.choice(targets)] * n)
            left -= n
        self.bursts = plan
        self._next = 0
        self._seq = 0
        self._rng = random.Random(rng.random())

    def _take(self) -> tuple[int, list[Target]] | None:
        with self._lock:
            if self._next >= len(self.bursts):
                return None
            i = self._next
            self._next += 1
            return i, self.bursts[i]

    def _post(self, target: Target, n: int, rng: random.Random) -> None:
        from agentq.turn.post import post_message

        with self._lock:
            self._seq += 1
            key = f"chaos-{self._seq}"
        mention = f"@{rng.choice(target.agents)} " if len(target.agents) > 1 else ""
        content = f"{mention}message {key}: {BODY_MARKER} and what should I eat? #{n}"
        for attempt in range(30):
            try:
                post_message(target.conversation_id, target.author_id, content, idempotency_key=key)
                return
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                with self._lock:
                    self.errors += 1
                log.warning("post failed (%s), retrying", type(exc).__name__)
                time.sleep(min(0.2 * 2**attempt, 3.0))
        raise RuntimeError(f"could not post {key} after 30 tries")

    def _run(self, start: float) -> None:
        rng = random.Random(self._rng.random())
        total = len(self.bursts)
        while (item := self._take()) is not None:
            i, burst = item
            # Bursts are spread evenly over the duration; messages within one come fast.
            at = start + self.cfg.duration * i / max(total, 1)
            time.sleep(max(0.0, at - time.monotonic()))
            for n, target in enumerate(burst):
                self._post(target, n, rng)
                time.sleep(rng.uniform(0, 0.15))

    def run(self) -> None:
        start = time.monotonic()
        threads = [
            threading.Thread(target=self._run, args=(start,), daemon=True)
            for _ in range(self.cfg.producers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


# -- faults ----------------------------------------------------------------------------------


class Faults:
    """Kills workers every few seconds and plays the one-off faults at set points of the load."""

    def __init__(
        self,
        cfg: ChaosConfig,
        stack: Any,
        redis_server: Any,
        llm: Any,
        report: ChaosReport,
        rng: random.Random,
    ) -> None:
        self.cfg, self.stack, self.redis, self.llm = cfg, stack, redis_server, llm
        self.report = report
        self.rng = random.Random(rng.random())
        self.stop = threading.Event()
        self.workers: list[str] = []
        self.flushed_at: datetime | None = None
        self.redis_restarted_at: datetime | None = None

    def start_worker(self, wait: bool) -> None:
        name = self.stack.start_worker(concurrency=self.cfg.worker_concurrency, wait=wait)
        self.workers.append(name)

    def _schedule(self) -> list[tuple[float, str, Callable[[], None]]]:
        d = self.cfg.duration
        spell = max(4.0, 0.08 * d)  # storms and slow spells: long enough to hit many calls
        plan: list[tuple[float, str, Callable[[], None]]] = []
        if self.cfg.flushall:
            plan.append((0.3 * d, "redis FLUSHALL", self._flushall))
        if self.cfg.storms:
            plan.append(
                (
                    0.4 * d,
                    "error storm (500 30%, 429 30% Retry-After 1s)",
                    lambda: self.llm.control(error_rate=0.3, rate_429=0.3, retry_after=1),
                )
            )
            plan.append((0.4 * d + spell, "storm over", self._calm))
            plan.append(
                (0.5 * d, "529 overloaded x25", lambda: self.llm.control(script=[529] * 25))
            )
        if self.cfg.kill_every:
            plan.append((0.55 * d, "reconciler SIGKILL (restarted)", self._kill_reconciler))
        if self.cfg.redis_restart:
            plan.append((0.6 * d, "redis restart (down 2s)", self._restart_redis))
        if self.cfg.slow:
            plan.append(
                (
                    0.75 * d,
                    f"slow spell (40% hang {LLM_TIMEOUT + 2:.0f}s, past the "
                    f"{LLM_TIMEOUT:.0f}s timeout)",
                    lambda: self.llm.control(timeout_rate=0.4, hang_seconds=LLM_TIMEOUT + 2),
                )
            )
            plan.append((0.75 * d + spell, "slow spell over", self._calm))
        if self.cfg.storms:
            # Long enough that some jobs spend all their attempts: they must fail visibly.
            plan.append(
                (
                    0.85 * d,
                    f"provider outage (100% 500 for {2 * spell:.0f}s)",
                    lambda: self.llm.control(error_rate=1.0),
                )
            )
            plan.append((0.85 * d + 2 * spell, "outage over", self._calm))
        if self.cfg.pg_restart:
            plan.append((0.92 * d, "postgresql restart", restart_postgresql))
        return sorted(plan, key=lambda p: p[0])

    def _calm(self) -> None:
        self.llm.control(error_rate=0, rate_429=0, timeout_rate=0)

    def _flushall(self) -> None:
        import redis

        from agentq.store.models import utcnow

        self.flushed_at = utcnow()
        redis.Redis.from_url(self.redis.url).flushall()

    def _restart_redis(self) -> None:
        from agentq.store.models import utcnow

        self.redis.stop()
        time.sleep(2.0)
        self.redis.restart()
        self.redis_restarted_at = utcnow()

    def _scan_broker(self) -> None:
        """Snapshot everything in Redis (queued and unacked task messages, timers) and look
        for the API key and message bodies, which must never be there."""
        from agentq.runtime.embedded import stored_values

        try:
            blobs = stored_values(self.redis.url)
        except Exception:  # noqa: BLE001 - Redis may be down right now (a fault)
            return
        self.report.redis_scans += 1
        for blob in blobs:
            for needle in (CHAOS_API_KEY, BODY_MARKER):
                if needle.encode() in (blob if isinstance(blob, bytes) else str(blob).encode()):
                    self.report.leaks.append(f"broker holds {needle[:12]}...: {blob[:120]!r}")

    def _kill_reconciler(self) -> None:
        self.stack.kill("reconciler", signal.SIGKILL)
        self.report.kills += 1
        self.stack.start_reconciler(interval=1.0)

    def _kill_one(self) -> None:
        if not self.workers:
            return
        name = self.rng.choice(self.workers)
        self.workers.remove(name)
        self.stack.kill(name, signal.SIGKILL)
        self.report.kills += 1
        self.start_worker(wait=False)
        self.report.worker_restarts += 1

    def _reap(self) -> None:
        """Replace workers that died on their own (and count them: they should not)."""
        for name in list(self.workers):
            proc = self.stack.procs.get(name)
            if proc is not None and proc.poll() is not None:
                log.warning("worker %s exited on its own with %s", name, proc.returncode)
                self.workers.remove(name)
                self.stack.procs.pop(name, None)
                self.report.unexpected_worker_exits += 1
                self.start_worker(wait=False)

    def run(self, start: float) -> None:
        plan = self._schedule()
        next_kill = start + (self.cfg.kill_every or float("inf"))
        next_scan = start + 1.0
        # Kills stop with the load; the one-off faults still scheduled play at their time.
        while not (self.stop.is_set() and not plan):
            now = time.monotonic()
            while plan and start + plan[0][0] <= now:
                _, what, action = plan.pop(0)
                try:
                    action()
                    self.report.faults.append(what)
                    log.warning("chaos: %s", what)
                except Exception as exc:  # noqa: BLE001 - report it, keep going
                    self.report.faults.append(f"{what} FAILED ({exc})")
            if now >= next_kill and not self.stop.is_set():
                self._kill_one()
                next_kill = now + self.cfg.kill_every
            self._reap()
            if now >= next_scan:
                self._scan_broker()
                next_scan = now + 3.0
            time.sleep(0.2)


# -- measuring -------------------------------------------------------------------------------


def unfinished_before(when: datetime) -> int:
    """User messages accepted before `when` whose jobs are not all finished (or that are
    not dispatched yet)."""
    from agentq.store.models import FINISHED_JOB_STATES, Conversation, Job, Message, MessageJob
    from agentq.store.session import reader

    with reader() as s:
        undispatched = (
            s.scalar(
                select(func.count())
                .select_from(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(
                    Message.role == "user",
                    Message.created_at <= when,
                    Message.seq > Conversation.handled_seq,
                )
            )
            or 0
        )
        running = (
            s.scalar(
                select(func.count(func.distinct(Message.id)))
                .select_from(Message)
                .join(MessageJob, MessageJob.message_id == Message.id)
                .join(Job, Job.id == MessageJob.job_id)
                .where(
                    Message.role == "user",
                    Message.created_at <= when,
                    Job.status.not_in(FINISHED_JOB_STATES),
                )
            )
            or 0
        )
        return int(undispatched) + int(running)


def first_finish_after(when: datetime) -> datetime | None:
    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        return s.scalar(select(func.min(Job.finished_at)).where(Job.finished_at > when))


def busy() -> int:
    """Open work the database knows of: unfinished jobs and undispatched conversations."""
    from agentq.store.models import FINISHED_JOB_STATES, Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        jobs = (
            s.scalar(
                select(func.count()).select_from(Job).where(Job.status.not_in(FINISHED_JOB_STATES))
            )
            or 0
        )
        convs = (
            s.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.handled_seq < Conversation.last_seq)
            )
            or 0
        )
        return int(jobs) + int(convs)


def scan_logs(log_dir: Path) -> list[str]:
    """Lines of the processes' logs that hold the API key or a message body."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open(errors="replace") as f:
            for n, line in enumerate(f, 1):
                if CHAOS_API_KEY in line or BODY_MARKER in line:
                    found.append(f"{path.name}:{n}: {line.strip()[:160]}")
    return found


def _safe(fn: Callable[..., Any], default: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - the database may be restarting under us
        return default


class RecoveryWatch(threading.Thread):
    """Times how long after a fault everything accepted before it is finished."""

    def __init__(self, faults: Faults, report: ChaosReport) -> None:
        super().__init__(daemon=True)
        self.faults, self.report = faults, report
        self.stop = threading.Event()

    def run(self) -> None:
        from agentq.store.models import utcnow

        r = self.report
        while not self.stop.wait(0.5):
            flushed, restarted = self.faults.flushed_at, self.faults.redis_restarted_at
            if flushed is not None:
                if r.flushall_first_completion_seconds is None:
                    first = _safe(first_finish_after, None, flushed)
                    if first is not None:
                        r.flushall_first_completion_seconds = (first - flushed).total_seconds()
                if (
                    r.flushall_recovery_seconds is None
                    and _safe(unfinished_before, 1, flushed) == 0
                ):
                    r.flushall_recovery_seconds = (utcnow() - flushed).total_seconds()
            if (
                restarted is not None
                and r.redis_restart_recovery_seconds is None
                and _safe(unfinished_before, 1, restarted) == 0
            ):
                r.redis_restart_recovery_seconds = (utcnow() - restarted).total_seconds()


def wait_settled(timeout: float, stable_for: int = 4) -> tuple[bool, float]:
    """Wait until the database shows no open work for `stable_for` checks in a row."""
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout:
        quiet = quiet + 1 if _safe(busy, 1) == 0 else 0
        if quiet >= stable_for:
            return True, time.monotonic() - start
        time.sleep(1.0)
    return False, time.monotonic() - start


# -- checking --------------------------------------------------------------------------------


def check_database() -> Anomalies:
    """Count anomalies in what the database holds now (call once the system is quiet)."""
    from agentq.store.models import Event, Job, Message, MessageJob
    from agentq.store.session import reader

    a = Anomalies()
    with reader() as s:
        messages = {m.id: m for m in s.scalars(select(Message))}
        jobs = {j.id: j for j in s.scalars(select(Job))}
        links = list(s.scalars(select(MessageJob)))
        failed_events = {
            e.payload.get("job_id")
            for e in s.scalars(select(Event).where(Event.type == "job.failed"))
        }
    triggers: dict[uuid.UUID, list[Message]] = defaultdict(list)  # job -> trigger messages
    covered: dict[tuple[uuid.UUID, uuid.UUID], list[Job]] = defaultdict(list)  # msg, agent
    reply_links: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for link in links:
        msg, job = messages.get(link.message_id), jobs.get(link.job_id)
        if msg is None or job is None:
            a.note("inconsistent", f"link {link.id} points at a missing message or job")
            continue
        if not (
            link.conversation_id == msg.conversation_id == job.conversation_id
            and link.agent_id == job.agent_id
        ):
            a.note("inconsistent", f"link {link.id} disagrees with job {job.id}")
        if link.status == "trigger":
            triggers[job.id].append(msg)
            covered[(msg.id, job.agent_id)].append(job)
        elif link.status == "reply":
            reply_links[job.id].append(msg.id)
            if msg.reply_to_job_id != job.id:
                a.note("inconsistent", f"reply link of job {job.id} to a message of another")
    replies: dict[uuid.UUID, list[Message]] = defaultdict(list)
    for m in messages.values():
        if m.reply_to_job_id is not None:
            replies[m.reply_to_job_id].append(m)

    # Every accepted (user) message: covered by exactly one finished job per agent, and by
    # at least one job.
    users = [m for m in messages.values() if m.role == "user" and m.deleted_at is None]
    a.accepted_messages = len(users)
    by_msg: dict[uuid.UUID, list[tuple[uuid.UUID, list[Job]]]] = defaultdict(list)
    for (mid, agent_id), js in covered.items():
        by_msg[mid].append((agent_id, js))
    for m in users:
        per_agent = by_msg.get(m.id, [])
        if not per_agent:
            a.note("lost", f"message seq {m.seq} of {m.conversation_id} has no job")
            continue
        for agent_id, js in per_agent:
            if len(js) > 1:
                a.note(
                    "duplicated",
                    f"message seq {m.seq} of {m.conversation_id} is a trigger "
                    f"of {len(js)} jobs of agent {agent_id}",
                )
            for job in js:
                if job.status not in ("completed", "failed"):
                    a.note("lost", f"job {job.id} ended {job.status}")

    # Each job: completed with exactly one reply, or failed visibly.
    by_conv: dict[uuid.UUID, list[Job]] = defaultdict(list)
    for job in jobs.values():
        by_conv[job.conversation_id].append(job)
        if not triggers.get(job.id):
            a.note("inconsistent", f"job {job.id} has no trigger link")
        elif job.trigger_message_id != min(triggers[job.id], key=lambda m: m.seq).id:
            a.note("inconsistent", f"job {job.id} trigger_message_id is not its first trigger")
        n = len(replies.get(job.id, []))
        if job.status == "completed":
            a.completed_jobs += 1
            if n == 0:
                a.note("lost", f"job {job.id} completed without a reply")
            elif n > 1:
                a.note("duplicated", f"job {job.id} has {n} replies")
            if len(reply_links.get(job.id, [])) != min(n, 1) or n == 0:
                a.note(
                    "inconsistent",
                    f"job {job.id} has {len(reply_links.get(job.id, []))} reply links",
                )
        else:
            if n:
                a.note("duplicated", f"job {job.id} is {job.status} yet has a reply")
            if job.status == "failed":
                a.failed_visible += 1
                if str(job.id) not in failed_events:
                    a.note("lost", f"job {job.id} failed without a job.failed event")

    notices: dict[uuid.UUID, int] = defaultdict(int)
    for m in messages.values():
        if m.role == "system" and "could not respond" in m.content:
            notices[m.conversation_id] += 1
    for conv_id, js in by_conv.items():
        failed = sum(1 for j in js if j.status == "failed")
        if notices[conv_id] < failed:
            a.note("lost", f"{conv_id}: {failed} failed jobs, {notices[conv_id]} notices")
        _check_order(a, conv_id, js, triggers, replies, messages)
    return a


def _check_order(
    a: Anomalies,
    conv_id: uuid.UUID,
    js: list[Job],
    triggers: dict[uuid.UUID, list[Message]],
    replies: dict[uuid.UUID, list[Message]],
    messages: dict[uuid.UUID, Message],
) -> None:
    # Overlap: a conversation's jobs ran one after another.
    never = datetime.max.replace(tzinfo=UTC)
    ran = sorted((j for j in js if j.started_at is not None), key=lambda j: j.started_at or never)
    for prev, nxt in zip(ran, ran[1:], strict=False):
        if prev.finished_at is None or (nxt.started_at or never) < prev.finished_at:
            a.note("overlapping", f"jobs {prev.id} and {nxt.id} of {conv_id} overlap")

    # Order: jobs started in the order of their triggers (a batch per dispatch), and each
    # reply comes after its triggers and after the replies of earlier jobs.
    def first_seq(j: Job) -> int:
        return min((m.seq for m in triggers.get(j.id, [])), default=0)

    if [j.id for j in ran] != [
        j.id for j in sorted(ran, key=lambda j: (first_seq(j), j.created_at, j.id))
    ]:
        a.note("reordered", f"jobs of {conv_id} started out of trigger order")
    # Jobs of one dispatch (a channel: one per agent) share their triggers; they run, and
    # so answer, in the order advance claims them.
    answered = sorted(
        (j for j in js if replies.get(j.id)), key=lambda j: (first_seq(j), j.created_at, j.id)
    )
    last_reply = 0
    for j in answered:
        reply = replies[j.id][0]
        top = max(m.seq for m in triggers.get(j.id, [])) if triggers.get(j.id) else 0
        if reply.seq <= top or reply.seq <= last_reply:
            a.note("reordered", f"reply seq {reply.seq} of {conv_id} is out of order")
        last_reply = max(last_reply, reply.seq)


# -- the run ---------------------------------------------------------------------------------


def run_chaos(cfg: ChaosConfig, echo: Callable[[str], None] = print) -> ChaosReport:
    """Run the whole experiment; returns the report (see `ChaosReport.ok`)."""
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade
    from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
    from agentq.testing.stack import Stack

    rng = random.Random(cfg.seed)
    admin = os.environ.get("AGENTQ_CHAOS_PG_ADMIN", DEFAULT_PG_ADMIN)
    own_db = cfg.database_url is None
    db_url = cfg.database_url or create_database(admin, prefix="agentq_chaos")
    log_dir = cfg.log_dir or tempfile.mkdtemp(prefix="agentq-chaos-")
    report = ChaosReport(config=asdict(cfg), anomalies=Anomalies(), log_dir=log_dir)
    saved_env = dict(os.environ)
    try:
        upgrade(db_url)
        with (
            EmbeddedRedis() as redis_server,
            FakeLLMServer(
                FakeLLMConfig(latency=cfg.llm_latency, jitter=cfg.llm_jitter, seed=cfg.seed)
            ) as llm,
        ):
            env = {
                **CHAOS_ENV,
                "AGENTQ_DATABASE_URL": db_url,
                "AGENTQ_REDIS_URL": redis_server.url,
                "LLM_ENDPOINT": llm.url,
            }
            os.environ.pop("AGENTQ_METRICS_PORT", None)
            from agentq.testing.stack import use_env

            use_env(env)
            targets = make_targets(cfg, rng)
            echo(
                f"chaos: {cfg.messages} messages, {len(targets)} conversations, "
                f"{cfg.workers} workers, database {db_url.rsplit('/', 1)[1]}, logs {log_dir}"
            )
            with Stack(env, log_dir=log_dir) as stack:
                faults = Faults(cfg, stack, redis_server, llm, report, rng)
                for _ in range(cfg.workers):
                    faults.start_worker(wait=True)
                stack.start_reconciler(interval=1.0)
                producers = Producers(cfg, targets, rng)
                watch = RecoveryWatch(faults, report)
                watch.start()
                start = time.monotonic()
                fault_thread = threading.Thread(target=faults.run, args=(start,), daemon=True)
                fault_thread.start()
                producers.run()
                report.load_seconds = time.monotonic() - start
                faults.stop.set()
                fault_thread.join()
                report.post_errors = producers.errors
                faults._calm()
                llm.control(script=[])
                echo(f"chaos: load done in {report.load_seconds:.1f}s; waiting to settle")
                report.settled, report.settle_seconds = wait_settled(cfg.settle_timeout)
                # Late redeliveries would show up now, not before.
                time.sleep(3.0)
                watch.stop.set()
                watch.join()
                report.leaks += scan_logs(Path(log_dir))
                stats = llm.stats()
                report.llm_requests = {"total": stats["requests"], **stats["by_status"]}
            report.anomalies = check_database()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        if own_db and not cfg.keep_db:
            try:
                drop_database(db_url, admin)
            except Exception as exc:  # noqa: BLE001 - report, do not mask the result
                echo(f"chaos: could not drop {db_url}: {exc}")
    for line in report.lines():
        echo(line)
    return report


def _env_database() -> str | None:
    """AGENTQ_DATABASE_URL when it names PostgreSQL (the SQLite default is no place for
    several worker processes under load)."""
    url = os.environ.get("AGENTQ_DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


chaos_app = typer.Typer(help="Fault-injection run: load, faults, anomalies counted from the DB.")


@chaos_app.command()
def chaos(
    messages: Annotated[int, typer.Option(help="Messages to post.")] = 300,
    conversations: Annotated[int, typer.Option(help="Conversations to spread them over.")] = 30,
    workers: Annotated[int, typer.Option(help="Celery worker processes.")] = 3,
    duration: Annotated[float, typer.Option(help="Seconds over which to post.")] = 30.0,
    kill_every: Annotated[
        float, typer.Option(help="Seconds between worker SIGKILLs (0: none).")
    ] = 5.0,
    flushall: Annotated[bool, typer.Option(help="One Redis FLUSHALL during the load.")] = True,
    redis_restart: Annotated[bool, typer.Option(help="One Redis restart during the load.")] = True,
    storms: Annotated[bool, typer.Option(help="Provider error storms (500, 429, 529).")] = True,
    slow: Annotated[bool, typer.Option(help="Provider hangs past the HTTP timeout.")] = True,
    pg_restart: Annotated[
        bool, typer.Option(help="Restart the machine's PostgreSQL (shared!).")
    ] = False,
    settle_timeout: Annotated[float, typer.Option(help="Seconds to wait for quiescence.")] = 300.0,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Use this database (default: a fresh one).")
    ] = None,
    keep_db: Annotated[bool, typer.Option(help="Keep the database it created.")] = False,
    log_dir: Annotated[str | None, typer.Option(help="Where worker logs go.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report here.")
    ] = None,
) -> None:
    """Drive load, inject faults, and count lost/duplicated/reordered/overlapping replies.

    Exits 1 if any anomaly count is non-zero, the API key or a message body leaked into
    the broker or the logs, or the system never settled."""
    logging.basicConfig(level=logging.ERROR)
    cfg = ChaosConfig(
        messages=messages,
        conversations=conversations,
        workers=workers,
        duration=duration,
        kill_every=kill_every,
        flushall=flushall,
        redis_restart=redis_restart,
        storms=storms,
        slow=slow,
        pg_restart=pg_restart,
        settle_timeout=settle_timeout,
        seed=seed,
        database_url=database_url or _env_database(),
        keep_db=keep_db,
        log_dir=log_dir,
    )
    report = run_chaos(cfg, echo=typer.echo)
    if json_out:
        json_out.write_text(json.dumps(report.as_dict(), default=str, indent=2))
    raise typer.Exit(0 if report.ok else 1)


if __name__ == "__main__":
    chaos_app()
