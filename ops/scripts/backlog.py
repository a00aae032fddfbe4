"""Waiting without polling (issue 16, item 1): what a backlog parked on one agent costs.

    .venv/bin/python ops/scripts/backlog.py                     # 300 conversations, 120 s
    .venv/bin/python ops/scripts/backlog.py -n 5 -d 10 --json   # a smoke run

Two scenarios, each on a fresh database, its own Redis, two Celery worker processes, the
reconciler and the fake LLM over HTTP:

- `paused`: an agent is paused with N conversations each waiting on one message; after
  D seconds it is resumed.
- `busy`: an agent at max_concurrent_jobs=1 has one call held by the fake LLM (script
  word `hold:S`) and N conversations waiting behind it; the call answers after D seconds
  (plus the time it took to post the N messages).

Every `--every` seconds (default 10) it samples, during the wait and the drain:

- commits / rollbacks: `pg_stat_database.xact_commit` / `xact_rollback` of the run's
  database (read from another database, so the sampling is not counted; a `reader()`
  session ends in a rollback, so rollbacks are the read-only transactions);
- tasks: control and LLM tasks the workers RAN, counted from their logs (Celery logs one
  "Task <name>[<id>] succeeded|retry|raised" line per execution, at INFO);
- unacked: tasks the workers hold (the broker's `unacked` hash): countdown tasks waiting
  for their time (what is scheduled for later) and tasks running (acks late); and the
  control queue's length;
- conns: connections to the run's database (`pg_stat_activity`), and to the server;
- errors: "too many clients" lines in every process's log.

Then it times the drain (resume / release until all are answered), checks every reply
from the database (`ops.chaos.check.check_database`: lost, duplicated, reordered,
overlapping) and counts how far the answers strayed from the order the conversations
were posted in (with one slot, the oldest parked conversation must go first).

By default it runs a PostgreSQL server of its own (initdb in a temporary directory,
`max_connections` 100 like the shared one), so that a connection storm hurts nobody else
and "too many clients" means this run; `--pg-admin URL` uses an existing server instead.
Figures go to stdout (a table, or `--json`); progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq` and `ops` in this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: settings of the run: quick debounce and reconciler, so that anything that polls shows
BASE_ENV = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.2",
    "AGENTQ_MAX_WAIT_SECONDS": "1",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "1",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "1",
    "AGENTQ_RETRY_BACKOFF_SECONDS": "0.5",
    "AGENTQ_RETRY_BACKOFF_MAX_SECONDS": "2",
    "LLM_PROVIDER": "openai",
    "LLM_API_KEY": "sk-scripts-not-a-secret",
    "LLM_BACKOFF_BASE": "0.05",
    "LLM_BACKOFF_MAX": "2",
}
#: one line per task execution in a worker's log (Celery's own INFO line)
TASK_LINE = re.compile(r"Task (agentq\.[a-z_]+)\[[0-9a-f-]+\] (succeeded|retry|raised)")
CONN_ERROR = "too many clients"
#: task names as printed in the table
SHORT = {
    "agentq.dispatch": "dispatch",
    "agentq.advance": "advance",
    "agentq.wake_agent": "wake",
    "agentq.reconcile": "reconcile",
    "agentq.complete": "complete",
    "agentq.run_job": "run_job",
}


def say(text: str) -> None:
    """Progress, on stderr (stdout holds the figures only)."""
    print(text, file=sys.stderr, flush=True)


# --- a PostgreSQL server of the run's own ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for path in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(path)
    raise RuntimeError(f"{name} not found: install PostgreSQL or pass --pg-admin")


@contextlib.contextmanager
def private_postgres(max_connections: int = 100) -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port; yields its admin URL (database
    `postgres`, trust auth). As root, the server runs as the `postgres` user."""
    data = Path(tempfile.mkdtemp(prefix="agentq-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data / "db"), "-U", "postgres", "-A", "trust"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [
            *as_user,
            _pg_bin("postgres"),
            "-D",
            str(data / "db"),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"max_connections={max_connections}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(data / "server.log", "ab"),  # noqa: SIM115 - the server keeps it
        start_new_session=True,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"private PostgreSQL did not start (logs in {data})"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()  # smart shutdown; the run's connections are gone by now
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Run:
    """One scenario's processes and where to read them."""

    stack: Any
    llm: Any
    env: dict[str, str]
    db_url: str
    admin_url: str
    log_dir: Path

    @property
    def datname(self) -> str:
        return self.db_url.rsplit("/", 1)[1]


@contextlib.contextmanager
def started_stack(
    admin_url: str,
    *,
    workers: int,
    concurrency: int,
    llm_latency: float,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    llm_workers: int = 0,
) -> Iterator[Run]:
    """A fresh database on `admin_url`'s server, its own Redis, the fake LLM, `workers`
    Celery worker processes and the reconciler (as `tests/conftest.py`'s `stack_with`).
    With `llm_workers`, the `workers` work the control queue only and that many more
    processes (threads x 50) the LLM queue, as a deployment splits them."""
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade
    from agentq.store.scratch import create_database, drop_database
    from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
    from agentq.testing.stack import Stack, use_env

    saved = dict(os.environ)
    db_url = create_database(admin_url, prefix="agentq_scripts")
    logs = log_dir or Path(tempfile.mkdtemp(prefix="agentq-scripts-"))
    try:
        upgrade(db_url)
        with (
            EmbeddedRedis() as redis,
            FakeLLMServer(FakeLLMConfig(latency=llm_latency)) as llm,
        ):
            full = {
                **BASE_ENV,
                "AGENTQ_DATABASE_URL": db_url,
                "AGENTQ_REDIS_URL": redis.url,
                "LLM_ENDPOINT": llm.url,
                **(env or {}),
            }
            os.environ.pop("AGENTQ_METRICS_PORT", None)
            use_env(full)
            with Stack(full, log_dir=logs) as stack:
                from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE

                control = (CONTROL_QUEUE,) if llm_workers else (CONTROL_QUEUE, LLM_QUEUE)
                for _ in range(workers):
                    stack.start_worker(queues=control, concurrency=concurrency)
                for _ in range(llm_workers):
                    stack.start_worker(queues=(LLM_QUEUE,), concurrency=50)
                stack.start_reconciler(interval=float(full["AGENTQ_RECONCILE_INTERVAL_SECONDS"]))
                yield Run(stack, llm, full, db_url, admin_url, logs)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        with contextlib.suppress(Exception):
            drop_database(db_url, admin_url)


# --- what is sampled ---------------------------------------------------------------------


class LogCounter:
    """Task executions and connection errors in the processes' logs, read incrementally."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._offsets: dict[Path, int] = {}

    def read(self) -> tuple[Counter[str], int]:
        """(tasks run by name, "too many clients" lines) since the last read."""
        tasks: Counter[str] = Counter()
        errors = 0
        for path in sorted(self.log_dir.glob("*.log")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                chunk = f.read()
            # Only whole lines: a line being written is read next time.
            end = chunk.rfind(b"\n") + 1
            self._offsets[path] = self._offsets.get(path, 0) + end
            for line in chunk[:end].decode(errors="replace").splitlines():
                if m := TASK_LINE.search(line):
                    tasks[SHORT.get(m.group(1), m.group(1))] += 1
                if CONN_ERROR in line:
                    errors += 1
        return tasks, errors


@dataclass
class Sample:
    t: float
    phase: str
    commits: int
    rollbacks: int
    tasks: dict[str, int]
    unacked: int
    control_queue: int
    connections: int
    server_connections: int
    conn_errors: int

    @property
    def tasks_run(self) -> int:
        return sum(self.tasks.values())


class Sampler(threading.Thread):
    """Takes a `Sample` every `every` seconds until stopped (the last one when stopped)."""

    def __init__(self, run: Run, every: float) -> None:
        super().__init__(daemon=True)
        import psycopg
        import redis

        self.run_, self.every = run, every
        self.phase = "setup"
        self.samples: list[Sample] = []
        self.logs = LogCounter(run.log_dir)
        self._pg = psycopg.connect(run.admin_url, autocommit=True)
        self._redis = redis.Redis.from_url(run.env["AGENTQ_REDIS_URL"])
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._start = self._next = time.monotonic()
        self._last = self._read_pg()
        self.logs.read()

    def _read_pg(self) -> tuple[int, int, int, int]:
        row = self._pg.execute(
            "SELECT d.xact_commit, d.xact_rollback,"
            " (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname),"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            " FROM pg_stat_database d WHERE d.datname = %s",
            (self.run_.datname,),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def take(self) -> Sample:
        with self._lock:
            return self._take()

    def _take(self) -> Sample:
        from agentq.runtime.broker import CONTROL_QUEUE

        # Statistics reach pg_stat_database within a second (PostgreSQL 15 flushes them
        # at most once a second per backend), which a 10 s sample absorbs.
        commits, rollbacks, conns, server = self._read_pg()
        tasks, errors = self.logs.read()
        sample = Sample(
            t=round(time.monotonic() - self._start, 1),
            phase=self.phase,
            commits=commits - self._last[0],
            rollbacks=rollbacks - self._last[1],
            tasks=dict(tasks),
            unacked=int(self._redis.hlen("unacked")),
            control_queue=int(self._redis.llen(CONTROL_QUEUE)),
            connections=conns,
            server_connections=server,
            conn_errors=errors,
        )
        self._last = (commits, rollbacks, conns, server)
        self.samples.append(sample)
        return sample

    def restart_clock(self, phase: str) -> None:
        """Start a new phase: the next sample covers from now."""
        with self._lock:
            self._take()  # what happened since the last tick belongs to the phase before
            self.phase = phase
            self._start = time.monotonic()
            self._next = self._start + self.every

    def run(self) -> None:
        self._next = time.monotonic() + self.every
        while not self._halt.wait(0.2):
            with self._lock:
                if time.monotonic() < self._next:
                    continue
                s = self._take()
                self._next += self.every
            say(
                f"  {s.phase:>5} t={s.t:6.1f}s commits={s.commits} tasks={s.tasks_run} "
                f"unacked={s.unacked} conns={s.connections} errors={s.conn_errors}"
            )

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.take()  # the tail since the last tick
        self._pg.close()


# --- the scenarios ------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    #: conversations that waited (busy: besides the one whose call was held)
    conversations: int
    waited_seconds: float
    drain_seconds: float | None
    answered: int
    expected: int
    lost: int
    duplicated: int
    reordered: int
    overlapping: int
    #: pairs of jobs that started in the opposite order to the one they parked in
    order_inversions: int
    samples: list[Sample] = field(default_factory=list)

    def phase(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.phase == name]

    def totals(self, name: str) -> dict[str, Any]:
        ss = self.phase(name)
        seconds = sum(_span(ss)) or 1.0
        tasks: Counter[str] = Counter()
        for s in ss:
            tasks.update(s.tasks)
        return {
            "seconds": round(sum(_span(ss)), 1),
            "commits": sum(s.commits for s in ss),
            "commits_per_s": round(sum(s.commits for s in ss) / seconds, 1),
            "rollbacks": sum(s.rollbacks for s in ss),
            "tasks": dict(tasks),
            "tasks_per_s": round(sum(tasks.values()) / seconds, 2),
            "max_unacked": max((s.unacked for s in ss), default=0),
            "max_connections": max((s.connections for s in ss), default=0),
            "max_server_connections": max((s.server_connections for s in ss), default=0),
            "conn_errors": sum(s.conn_errors for s in ss),
        }

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = [{**asdict(s), "tasks_run": s.tasks_run} for s in self.samples]
        d["wait"] = self.totals("wait")
        d["drain"] = self.totals("drain")
        return d


def _span(samples: list[Sample]) -> list[float]:
    """Seconds each sample covers."""
    out, before = [], 0.0
    for s in samples:
        out.append(max(s.t - before, 0.0))
        before = s.t
    return out


def make_conversations(client: Any, agent_id: uuid.UUID, n: int) -> list[tuple[Any, Any]]:
    """`n` DMs with the agent: (conversation id, user participant id), nothing posted."""

    def one(i: int) -> tuple[Any, Any]:
        conv = client.create_conversation("dm")
        client.add_participant(conv.id, agent=agent_id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        return conv.id, user.id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def post_in_order(client: Any, convs: list[tuple[Any, Any]]) -> None:
    """One message to each conversation, one after another (their order is the queue's)."""
    for i, (conv_id, user_id) in enumerate(convs):
        client.post_message(conv_id, user_id, f"question {i}")


def count_jobs(agent_id: uuid.UUID) -> Counter[str]:
    from sqlalchemy import func, select

    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        rows = s.execute(
            select(Job.status, func.count()).where(Job.agent_id == agent_id).group_by(Job.status)
        )
        return Counter({str(status): int(n) for status, n in rows})


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
    """Seconds until `check()` holds; RuntimeError after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


def start_order_inversions(agent_id: uuid.UUID) -> int:
    """Pairs of the agent's jobs where the younger (by `created_at`, the order they parked
    in) started first. With one slot, waking oldest first makes this 0; with more, jobs
    woken together start in any order."""
    from sqlalchemy import select

    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        rows = s.execute(
            select(Job.started_at).where(Job.agent_id == agent_id).order_by(Job.created_at)
        )
        order = [at for (at,) in rows if at is not None]
    return sum(1 for i, a in enumerate(order) for b in order[i + 1 :] if b < a)


def finish(
    name: str,
    run: Run,
    sampler: Sampler,
    convs: list[tuple[Any, Any]],
    agent_id: uuid.UUID,
    waited: float,
    drain_timeout: float,
) -> Result:
    """Time the drain, stop sampling, and check every reply."""
    from ops.chaos.check import check_database, wait_settled

    expected = len(convs)
    try:
        drain: float | None = wait_for(
            "every conversation answered",
            lambda: sum(count_jobs(agent_id)[k] for k in ("completed", "failed")) >= expected,
            drain_timeout,
            every=0.25,
        )
    except RuntimeError as exc:
        say(f"{name}: {exc}")
        drain = None
    say(f"{name}: drained in {drain}s; settling")
    wait_settled(30.0, stable_for=2)
    sampler.stop()
    a = check_database()
    return Result(
        scenario=name,
        conversations=len(convs) - (name == "busy"),  # the held one does not wait
        waited_seconds=round(waited, 1),
        drain_seconds=None if drain is None else round(drain, 2),
        answered=count_jobs(agent_id)["completed"],
        expected=expected,
        lost=a.lost,
        duplicated=a.duplicated,
        reordered=a.reordered,
        overlapping=a.overlapping,
        order_inversions=start_order_inversions(agent_id),
        samples=sampler.samples,
    )


def scenario_paused(
    run: Run, n: int, seconds: float, every: float, drain_timeout: float, slots: int, rate: int
) -> Result:
    from agentq.client import Client

    client = Client()
    agent = client.create_agent(
        f"paused-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=slots, rate_limit_per_minute=rate
    )
    client.pause_agent(agent.id)
    convs = make_conversations(client, agent.id, n)
    sampler = Sampler(run, every)
    sampler.start()
    post_in_order(client, convs)
    wait_for(f"{n} jobs waiting", lambda: count_jobs(agent.id)["waiting"] >= n, 120)
    say(f"paused: {n} conversations parked on a paused agent; waiting {seconds:.0f}s")
    sampler.restart_clock("wait")
    time.sleep(seconds)
    sampler.restart_clock("drain")
    say("paused: resuming the agent")
    client.resume_agent(agent.id)
    return finish("paused", run, sampler, convs, agent.id, seconds, drain_timeout)


def scenario_busy(
    run: Run, n: int, seconds: float, every: float, drain_timeout: float, margin: float, rate: int
) -> Result:
    from agentq.client import Client

    client = Client()
    agent = client.create_agent(
        f"busy-{uuid.uuid4().hex[:8]}", max_concurrent_jobs=1, rate_limit_per_minute=rate
    )
    convs = make_conversations(client, agent.id, n + 1)
    held, waiting = convs[0], convs[1:]
    # The first call is held for the wait, plus time to post the others (the margin).
    hold = seconds + margin
    run.llm.control(script=[f"hold:{hold:g}"])
    sampler = Sampler(run, every)
    sampler.start()
    client.post_message(held[0], held[1], "hold this one")
    wait_for("the held call", lambda: run.llm.stats()["in_flight"] >= 1, 60, every=0.1)
    held_at = time.monotonic()
    post_in_order(client, waiting)
    wait_for(f"{n} jobs waiting", lambda: count_jobs(agent.id)["waiting"] >= n, 120)
    say(f"busy: {n} conversations parked behind one held call; waiting until it answers")
    sampler.restart_clock("wait")
    waited_from = time.monotonic()
    release_at = held_at + hold
    time.sleep(max(release_at - time.monotonic(), 0.0))
    wait_for("the held call's answer", lambda: count_jobs(agent.id)["completed"] >= 1, 120, 0.05)
    waited = time.monotonic() - waited_from
    sampler.restart_clock("drain")
    say("busy: the held call answered")
    return finish("busy", run, sampler, convs, agent.id, waited, drain_timeout)


# --- output ------------------------------------------------------------------------------

TASK_COLUMNS = ("dispatch", "advance", "wake", "reconcile", "complete", "run_job")


def series_lines(result: Result) -> list[str]:
    head = (
        f"{'phase':<6}{'t(s)':>7}{'commits':>9}{'rollbk':>8}{'tasks':>7}"
        + "".join(f"{c:>10}" for c in TASK_COLUMNS)
        + f"{'unack':>6}{'ctlq':>6}{'conns':>7}{'server':>7}{'errors':>7}"
    )
    out = [head]
    for s in result.samples:
        out.append(
            f"{s.phase:<6}{s.t:>7.1f}{s.commits:>9}{s.rollbacks:>8}{s.tasks_run:>7}"
            + "".join(f"{s.tasks.get(c, 0):>10}" for c in TASK_COLUMNS)
            + f"{s.unacked:>6}{s.control_queue:>6}{s.connections:>7}"
            f"{s.server_connections:>7}{s.conn_errors:>7}"
        )
    return out


def report_lines(results: list[Result], label: str) -> list[str]:
    out = [f"# backlog ({label})"]
    for r in results:
        w, d = r.totals("wait"), r.totals("drain")
        out += [
            "",
            f"## {r.scenario}: {r.conversations} conversations waited {r.waited_seconds:.0f}s",
            *series_lines(r),
            "",
            f"wait   {w['seconds']}s: {w['commits']} commits ({w['commits_per_s']}/s), "
            f"{w['rollbacks']} read-only, tasks run {w['tasks_per_s']}/s {w['tasks']}, "
            f"max unacked {w['max_unacked']}, max conns {w['max_connections']} "
            f"(server {w['max_server_connections']}), conn errors {w['conn_errors']}",
            f"drain  {d['seconds']}s: {d['commits']} commits, tasks {d['tasks']}, "
            f"max conns {d['max_connections']} (server {d['max_server_connections']}), "
            f"conn errors {d['conn_errors']}",
            f"answered {r.answered}/{r.expected} "
            + (f"in {r.drain_seconds}s" if r.drain_seconds is not None else "by the drain timeout")
            + f"; lost (or not finished) {r.lost}, "
            f"duplicated {r.duplicated}, reordered {r.reordered}, overlapping {r.overlapping}, "
            f"order inversions {r.order_inversions}",
        ]
    return out


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the module's docstring as written, and each flag's default."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("-n", "--conversations", type=int, default=300, help="waiting conversations")
    p.add_argument("-d", "--seconds", type=float, default=120.0, help="how long they wait")
    p.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    p.add_argument(
        "--scenario", choices=("paused", "busy", "both"), default="both", help="what to run"
    )
    p.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    p.add_argument("--concurrency", type=int, default=20, help="threads per worker")
    p.add_argument("--llm-latency", type=float, default=0.05, help="fake LLM seconds per call")
    p.add_argument(
        "--hold-margin",
        type=float,
        default=30.0,
        help="busy: the call is held for --seconds plus this (posting the others takes it)",
    )
    p.add_argument("--slots", type=int, default=10, help="paused: the agent's max_concurrent_jobs")
    p.add_argument(
        "--rate",
        type=int,
        default=600,
        help="the agents' rate_limit_per_minute (at most the default profile's cap)",
    )
    p.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait")
    p.add_argument(
        "--pg-admin",
        default=None,
        help="an existing server's admin URL; none: a server of its own (initdb)",
    )
    p.add_argument("--max-connections", type=int, default=100, help="of the private server")
    p.add_argument("--label", default="this checkout", help="what the report calls the code")
    p.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.conversations < 1 or args.seconds <= 0 or args.every <= 0:
        p.error("--conversations, --seconds and --every must be positive")
    return args


def _terminated(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds: processes stopped, DB dropped


def quiet_and_interruptible() -> None:
    """Library logs at ERROR only (stderr is for progress); SIGTERM and SIGINT unwind the
    run, so that its processes stop and its database is dropped (a background job ignores
    SIGINT unless told otherwise)."""
    import logging
    import signal

    logging.basicConfig(level=logging.ERROR)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    args = parse(argv)
    names = ["paused", "busy"] if args.scenario == "both" else [args.scenario]
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres(args.max_connections))
        for name in names:
            hold = args.seconds + args.hold_margin
            env = {
                # the held call must outlast its HTTP timeout and attempt deadline
                "LLM_TIMEOUT": str(hold + 60),
                "LLM_ATTEMPT_DEADLINE": str(hold + 120),
            }
            logs = args.log_dir / name if args.log_dir else None
            say(f"{name}: starting the stack ({args.workers} workers x {args.concurrency})")
            with started_stack(
                admin,
                workers=args.workers,
                concurrency=args.concurrency,
                llm_latency=args.llm_latency,
                env=env,
                log_dir=logs,
            ) as run:
                if name == "paused":
                    r = scenario_paused(
                        run,
                        args.conversations,
                        args.seconds,
                        args.every,
                        args.drain_timeout,
                        args.slots,
                        args.rate,
                    )
                else:
                    r = scenario_busy(
                        run,
                        args.conversations,
                        args.seconds,
                        args.every,
                        args.drain_timeout,
                        args.hold_margin,
                        args.rate,
                    )
                results.append(r)
    if args.json:
        print(json.dumps({"label": args.label, "scenarios": [r.as_dict() for r in results]}))
    else:
        print("\n".join(report_lines(results, args.label)))
    ok = all(r.answered == r.expected and r.lost == 0 and r.duplicated == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
