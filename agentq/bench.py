"""`agentq bench`: agentq's throughput and latency against bare Celery on the same Redis.

One run starts everything it measures, on its own: a PostgreSQL database it creates
(or the one given), an embedded Redis of its own, the fake LLM with a set latency, and
agentq worker processes with the chosen pool. Then:

1. **latency**: `conversations` DMs receive `rate` messages a second for `duration`
   seconds. From the database timestamps of every turn: end-to-end latency split into
   debounce wait, queue wait, LLM time, completion time and orchestration overhead
   (end-to-end minus the debounce window minus the LLM call), and the debounce timer's
   fire-time error (job created minus computed due time).
2. **throughput**: `burst` messages, one a conversation, posted at once: turns a second.
3. **baselines** on the same Redis: bare Celery no-op tasks a second, and a hand-written
   one-task-a-message pipeline doing the same database writes (messages/s).
4. **capacity** (optional): `capacity` LLM calls held at once by one worker process with
   a slow fake LLM: peak in flight, worker RSS, and whether any turn was lost.

Figures depend on the host; nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from agentq.store.scratch import create_database, drop_database

#: where the benchmark may create (and afterwards drop) its own PostgreSQL database
PG_ADMIN = os.environ.get(
    "AGENTQ_BENCH_PG_ADMIN",
    os.environ.get("AGENTQ_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"),
)
#: the agentq settings a benchmark runs with (besides database, Redis and LLM)
BENCH_ENV = {
    "AGENTQ_MAX_WAIT_SECONDS": "2",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "5",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "5",
    "LLM_API_KEY": "sk-bench",
    "LLM_PROVIDER": "openai",
    "LLM_TIMEOUT": "120",  # the capacity phase may hold calls for a minute or more
}


@dataclass
class BenchConfig:
    conversations: int = 100  # DMs receiving the latency phase's messages
    rate: float = 100.0  # messages a second offered in the latency phase
    duration: float = 30.0  # seconds of the latency phase
    burst: int = 1000  # messages (one a conversation) of the throughput phase
    latency: float = 0.05  # fake LLM seconds an answer
    debounce: float = 0.1  # AGENTQ_DEBOUNCE_SECONDS
    pool: str = "threads"  # worker pool: threads | gevent
    concurrency: int = 200  # tasks in flight a worker process
    workers: int = 2  # agentq worker processes (each serves both queues): one a core here
    noop_tasks: int = 5000  # bare Celery no-op tasks
    capacity: int = 0  # LLM calls held at once in the capacity phase (0: skip)
    capacity_latency: float = 10.0  # fake LLM seconds an answer in the capacity phase
    producers: int = 8  # producer threads posting messages


#: the CI configuration: every phase, small, well under a minute of load
SHORT = BenchConfig(
    conversations=10,
    rate=20,
    duration=3,
    burst=60,
    concurrency=50,
    noop_tasks=500,
    capacity=100,
    capacity_latency=2.0,
    producers=4,
    workers=1,
)
#: the issue's targets: 100 messages/s, 2,000 calls in flight at 10 s latency
FULL = BenchConfig(capacity=2000)


# ---------------------------------------------------------------------------- helpers


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) and the count; zeros for no values."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    s = sorted(values)

    def rank(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, int(p / 100 * len(s) + 0.5) - 1))], 2)

    return {"n": len(s), "p50": rank(50), "p95": rank(95), "p99": rank(99)}


class RSSSampler:
    """Peak resident memory of some processes (their children included), sampled."""

    def __init__(self, pids: Callable[[], list[int]], every: float = 0.25) -> None:
        self.pids, self.every = pids, every
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pid: int) -> int:
        try:
            import psutil

            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except ImportError:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except Exception:  # noqa: BLE001 - the process ended
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids():
                self.peak[pid] = max(self.peak.get(pid, 0), self._rss(pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self) -> float:
        return round(max(self.peak.values(), default=0) / 2**20, 1)


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    from agentq.stack import use_env

    saved = {k: os.environ.get(k) for k in env}
    use_env(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        use_env({})


def _wait(fn: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _make_dms(n: int, producers: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """`n` DMs of a user and an agent of their own: [(conversation id, user id)]."""
    from agentq.client import Client

    client = Client()

    def one(i: int) -> tuple[uuid.UUID, uuid.UUID]:
        agent = client.create_agent(
            f"bench-{uuid.uuid4().hex[:8]}",
            role="benchmark",
            rate_limit_per_minute=100_000,
        )
        conv = client.create_conversation("dm")
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        return conv.id, user.id

    with ThreadPoolExecutor(producers) as pool:
        return list(pool.map(one, range(n)))


def _settled(conv_ids: list[uuid.UUID]) -> bool:
    """Every message of these conversations handled and no job of theirs unfinished."""
    from sqlalchemy import func, select

    from agentq.store.models import Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        behind = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.id.in_(conv_ids), Conversation.handled_seq < Conversation.last_seq)
        )
        unfinished = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.conversation_id.in_(conv_ids),
                Job.status.in_(("waiting", "active", "delayed")),
            )
        )
    return not behind and not unfinished


def _backlog(conv_ids: list[uuid.UUID]) -> str:
    """What keeps these conversations from settling (for the timeout message)."""
    from sqlalchemy import func, select

    from agentq.store.models import Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        behind = s.scalar(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.id.in_(conv_ids), Conversation.handled_seq < Conversation.last_seq)
        )
        jobs = dict(
            s.execute(
                select(Job.status, func.count())
                .where(Job.conversation_id.in_(conv_ids))
                .group_by(Job.status)
            ).all()
        )
    return f"{behind} conversations with unhandled messages, jobs by status {jobs}"


def _wait_settled(conv_ids: list[uuid.UUID], timeout: float, what: str) -> None:
    try:
        _wait(lambda: _settled(conv_ids), timeout, what)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {_backlog(conv_ids)}") from None


def _post_schedule(
    targets: list[tuple[uuid.UUID, uuid.UUID]], count: int, rate: float, producers: int
) -> list[float]:
    """Post `count` messages round-robin over `targets`, `rate` a second (0: at once);
    returns each post's API latency in ms."""
    from agentq.turn.post import post_message

    start = time.monotonic()
    api_ms: list[float] = []

    def one(k: int) -> None:
        if rate > 0:
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        conv, user = targets[k % len(targets)]
        t = time.perf_counter()
        post_message(conv, user, f"benchmark message {k}")
        api_ms.append((time.perf_counter() - t) * 1000)

    with ThreadPoolExecutor(producers) as pool:
        list(pool.map(one, range(count)))
    return api_ms


def _turns(conv_ids: list[uuid.UUID], debounce: float, max_wait: float) -> list[dict[str, float]]:
    """Each completed job of these conversations, timed from the database (ms)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import aliased

    from agentq.store.models import Job, Message, MessageJob
    from agentq.store.session import reader

    reply = aliased(Message)
    q = (
        select(
            Job.created_at,
            Job.started_at,
            Job.result,
            reply.created_at,
            func.min(Message.created_at),
            func.max(Message.created_at),
        )
        .join(MessageJob, (MessageJob.job_id == Job.id) & (MessageJob.status == "trigger"))
        .join(Message, Message.id == MessageJob.message_id)
        .join(reply, reply.reply_to_job_id == Job.id)
        .where(Job.conversation_id.in_(conv_ids), Job.status == "completed")
        .group_by(Job.id, reply.created_at)
    )
    out = []
    with reader() as s:
        for created, started, result, replied, first, last in s.execute(q):
            due = min(last + timedelta(seconds=debounce), first + timedelta(seconds=max_wait))
            window = (due - first).total_seconds() * 1000
            llm = float((result or {}).get("latency_ms", 0))
            e2e = (replied - first).total_seconds() * 1000
            out.append(
                {
                    "e2e": e2e,
                    "debounce": (created - first).total_seconds() * 1000,
                    "queue": (started - created).total_seconds() * 1000,
                    "llm": llm,
                    "completion": (replied - started).total_seconds() * 1000 - llm,
                    "overhead": e2e - window - llm,
                    "fire_error": (created - due).total_seconds() * 1000,
                    "first": first.timestamp(),
                    "replied": replied.timestamp(),
                }
            )
    return out


def _span_rate(turns: list[dict[str, float]]) -> float:
    if not turns:
        return 0.0
    span = max(t["replied"] for t in turns) - min(t["first"] for t in turns)
    return round(len(turns) / span, 1) if span > 0 else 0.0


# ---------------------------------------------------------------------------- phases


def _worker_pids(stack: Any) -> list[int]:
    return [p.pid for n, p in stack.procs.items() if n.startswith("worker") and p.poll() is None]


def _agentq_phases(
    cfg: BenchConfig, env: dict[str, str], llm: Any, log_dir: Path
) -> dict[str, Any]:
    from agentq.stack import Stack

    out: dict[str, Any] = {}
    n_convs = max(cfg.conversations, cfg.burst)
    with Stack(env, log_dir=log_dir) as stack, RSSSampler(lambda: _worker_pids(stack)) as rss:
        for _ in range(cfg.workers):
            stack.start_worker(pool=cfg.pool, concurrency=cfg.concurrency)
        stack.start_reconciler(interval=float(BENCH_ENV["AGENTQ_RECONCILE_INTERVAL_SECONDS"]))
        dms = _make_dms(n_convs, cfg.producers)
        max_wait = float(env["AGENTQ_MAX_WAIT_SECONDS"])

        # 1. latency at the offered rate
        lat = dms[: cfg.conversations]
        llm.reset_stats()
        count = int(cfg.rate * cfg.duration)
        t0 = time.monotonic()
        api_ms = _post_schedule(lat, count, cfg.rate, cfg.producers)
        offered = count / max(time.monotonic() - t0, 1e-9)
        ids = [c for c, _ in lat]
        # Past saturation the backlog drains at the box's own pace (10 turns/s or more).
        _wait_settled(ids, 120 + cfg.duration + count / 10, "the latency phase's replies")
        turns = _turns(ids, cfg.debounce, max_wait)
        out["latency"] = {
            "messages": count,
            "offered_rate": round(offered, 1),
            "turns": len(turns),
            "turns_per_s": _span_rate(turns),
            "api_post_ms": percentiles(api_ms),
            **{
                k: percentiles([t[k] for t in turns])
                for k in ("e2e", "debounce", "queue", "llm", "completion", "overhead", "fire_error")
            },
            "peak_llm_in_flight_per_worker": llm.stats()["peak_in_flight"] / cfg.workers,
        }

        # 2. throughput: one message a conversation, all at once
        burst = dms[: cfg.burst]
        llm.reset_stats()
        since = time.time()
        _post_schedule(burst, cfg.burst, 0, cfg.producers)
        ids = [c for c, _ in burst]
        _wait_settled(ids, 300, "the throughput phase's replies")
        turns = [t for t in _turns(ids, cfg.debounce, max_wait) if t["first"] >= since]
        out["throughput"] = {
            "messages": cfg.burst,
            "turns": len(turns),
            "turns_per_s": _span_rate(turns),
            "peak_llm_in_flight_per_worker": llm.stats()["peak_in_flight"] / cfg.workers,
        }
        out["worker_rss_mb"] = rss.peak_mb()
    return out


def _baseline_phases(cfg: BenchConfig, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    from agentq import bench_baseline as bb

    benv = {
        **os.environ,
        **env,
        "AGENTQ_BENCH_REDIS_URL": env["AGENTQ_REDIS_URL"],
        "AGENTQ_BENCH_DATABASE_URL": env["AGENTQ_DATABASE_URL"],
    }
    app = bb.make_app(env["AGENTQ_REDIS_URL"])
    log = open(log_dir / "baseline.log", "ab")  # noqa: SIM115 - closed below
    # As many worker processes as agentq had, with the same pool: a like-for-like baseline.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "agentq.bench_baseline",
                "worker",
                "-Q",
                bb.QUEUE,
                "-P",
                cfg.pool,
                "-c",
                str(cfg.concurrency),
                "-n",
                f"bench{i}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "WARNING",
            ],
            env=benv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(cfg.workers)
    ]
    out: dict[str, Any] = {}
    try:
        _wait(
            lambda: len(app.control.ping(timeout=0.5) or []) >= cfg.workers,
            60,
            "the baseline workers",
        )
        import redis

        r = redis.Redis.from_url(env["AGENTQ_REDIS_URL"])
        r.delete(bb.NOOP_COUNTER)
        t0 = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(cfg.noop_tasks):
                app.send_task(bb.NOOP, queue=bb.QUEUE, producer=producer)
        _wait(lambda: int(r.get(bb.NOOP_COUNTER) or 0) >= cfg.noop_tasks, 300, "no-op tasks")
        out["noop_tasks_per_s"] = round(cfg.noop_tasks / (time.monotonic() - t0), 1)
        r.close()

        # the hand-written pipeline: its own conversations, one message each, all at once
        os.environ.update(
            {k: benv[k] for k in ("AGENTQ_BENCH_REDIS_URL", "AGENTQ_BENCH_DATABASE_URL")}
        )
        dms = _make_dms(cfg.burst, cfg.producers)
        t0 = time.monotonic()
        with ThreadPoolExecutor(cfg.producers) as pool:
            list(pool.map(lambda d: bb.post(d[0], d[1], "benchmark message"), dms))
        ids = [c for c, _ in dms]
        _wait(lambda: _pipeline_done(ids), 300, "the pipeline's replies")
        out["pipeline_messages_per_s"] = round(cfg.burst / (time.monotonic() - t0), 1)
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
        for proc in procs:
            proc.wait(30)
        log.close()
    return out


def _pipeline_done(conv_ids: list[uuid.UUID]) -> bool:
    from sqlalchemy import func, select

    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        done = s.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.conversation_id.in_(conv_ids), Job.status == "completed")
        )
    return done == len(conv_ids)


def _capacity_phase(
    cfg: BenchConfig, env: dict[str, str], llm: Any, log_dir: Path
) -> dict[str, Any]:
    """`capacity` calls held at once by ONE LLM worker process (control work elsewhere)."""
    from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE
    from agentq.stack import Stack

    n = cfg.capacity
    dms = _make_dms(n, cfg.producers)
    llm.control(latency=cfg.capacity_latency, jitter=0.0)
    llm.reset_stats()
    with Stack(env, log_dir=log_dir) as stack:
        stack.start_worker(queues=(CONTROL_QUEUE,), pool=cfg.pool, concurrency=50, name="control")
        stack.start_worker(queues=(LLM_QUEUE,), pool=cfg.pool, concurrency=n, name="worker-llm")
        stack.start_reconciler(interval=5.0)
        with RSSSampler(lambda: _worker_pids(stack)) as rss:
            t0 = time.monotonic()
            _post_schedule(dms, n, 0, cfg.producers)
            ids = [c for c, _ in dms]
            _wait_settled(ids, 120 + 6 * cfg.capacity_latency, "the capacity replies")
            elapsed = time.monotonic() - t0
        turns = _turns(ids, cfg.debounce, float(env["AGENTQ_MAX_WAIT_SECONDS"]))
    llm.control(latency=cfg.latency)
    return {
        "calls": n,
        "llm_latency_s": cfg.capacity_latency,
        "peak_in_flight": llm.stats()["peak_in_flight"],
        "worker_rss_mb": rss.peak_mb(),
        "replies": len(turns),
        "lost": n - len(turns),
        "seconds": round(elapsed, 1),
    }


def run_bench(
    cfg: BenchConfig, database_url: str | None = None, log_dir: str | None = None
) -> dict[str, Any]:
    """Run every phase of `cfg` and return the figures (see the module docstring)."""
    from agentq.fake_llm import FakeLLMConfig, FakeLLMServer
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade

    logs = Path(log_dir or tempfile.mkdtemp(prefix="agentq-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    own_db = database_url is None
    url = database_url or create_database(PG_ADMIN, prefix="agentq_bench")
    try:
        upgrade(url)
        with (
            EmbeddedRedis() as redis_server,
            FakeLLMServer(FakeLLMConfig(latency=cfg.latency)) as llm,
        ):
            env = {
                **BENCH_ENV,
                "AGENTQ_DATABASE_URL": url,
                "AGENTQ_REDIS_URL": redis_server.url,
                "AGENTQ_DEBOUNCE_SECONDS": str(cfg.debounce),
                "LLM_ENDPOINT": llm.url,
            }
            with _environment(env):
                result: dict[str, Any] = {"config": asdict(cfg), "log_dir": str(logs)}
                result["agentq"] = _agentq_phases(cfg, env, llm, logs)
                result["baseline"] = _baseline_phases(cfg, env, logs)
                if cfg.capacity:
                    result["capacity"] = _capacity_phase(cfg, env, llm, logs)
    finally:
        if own_db:
            drop_database(url, PG_ADMIN)
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict[str, Any]) -> dict[str, float]:
    base, aq = r["baseline"], r["agentq"]

    def div(a: float, b: float) -> float:
        return round(a / b, 3) if b else 0.0

    return {
        "turns_vs_pipeline": div(aq["throughput"]["turns_per_s"], base["pipeline_messages_per_s"]),
        "turns_vs_noop": div(aq["throughput"]["turns_per_s"], base["noop_tasks_per_s"]),
        "pipeline_vs_noop": div(base["pipeline_messages_per_s"], base["noop_tasks_per_s"]),
    }


def format_report(r: dict[str, Any]) -> str:
    """The human-readable table."""
    lat, thr, base = r["agentq"]["latency"], r["agentq"]["throughput"], r["baseline"]
    c = r["config"]
    lines = [
        f"agentq bench  pool={c['pool']} x{c['concurrency']}  workers={c['workers']}  "
        f"llm latency={c['latency']}s  debounce={c['debounce']}s",
        f"latency phase: {lat['messages']} messages at {lat['offered_rate']}/s over "
        f"{c['conversations']} conversations -> {lat['turns']} turns, {lat['turns_per_s']} turns/s",
        f"{'ms':<22}{'p50':>9}{'p95':>9}{'p99':>9}",
    ]
    for k, label in (
        ("e2e", "end-to-end"),
        ("debounce", "debounce wait"),
        ("queue", "queue wait"),
        ("llm", "LLM"),
        ("completion", "completion"),
        ("overhead", "orchestration overhead"),
        ("fire_error", "debounce fire error"),
        ("api_post_ms", "post_message (API)"),
    ):
        p = lat[k]
        lines.append(f"{label:<22}{p['p50']:>9.1f}{p['p95']:>9.1f}{p['p99']:>9.1f}")
    lines += [
        f"peak LLM calls in flight / worker: {lat['peak_llm_in_flight_per_worker']:g} (latency), "
        f"{thr['peak_llm_in_flight_per_worker']:g} (throughput)",
        f"worker RSS peak: {r['agentq']['worker_rss_mb']} MB",
        f"throughput: {thr['turns']} turns, {thr['turns_per_s']} turns/s",
        f"bare Celery no-op: {base['noop_tasks_per_s']} tasks/s; hand-written pipeline: "
        f"{base['pipeline_messages_per_s']} messages/s",
        "ratios: " + ", ".join(f"{k}={v}" for k, v in r["ratios"].items()),
    ]
    if "capacity" in r:
        cap = r["capacity"]
        lines.append(
            f"capacity: {cap['calls']} calls at {cap['llm_latency_s']}s -> peak in flight "
            f"{cap['peak_in_flight']}, worker RSS {cap['worker_rss_mb']} MB, lost {cap['lost']}, "
            f"{cap['seconds']}s"
        )
    return "\n".join(lines)


def bench(
    short: Annotated[bool, typer.Option("--short", help="The small CI configuration.")] = False,
    conversations: Annotated[
        int | None, typer.Option(help="Conversations of the latency phase.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages a second in the latency phase.")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of the latency phase.")] = None,
    burst: Annotated[int | None, typer.Option(help="Messages of the throughput phase.")] = None,
    latency: Annotated[float | None, typer.Option(help="Fake LLM latency, seconds.")] = None,
    debounce: Annotated[float | None, typer.Option(help="Debounce seconds.")] = None,
    pool: Annotated[str | None, typer.Option(help="Worker pool: threads or gevent.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Tasks in flight a worker.")] = None,
    workers: Annotated[int | None, typer.Option(help="agentq worker processes.")] = None,
    noop_tasks: Annotated[int | None, typer.Option(help="Bare Celery no-op tasks.")] = None,
    capacity: Annotated[
        int | None, typer.Option(help="LLM calls in flight to test (0: skip).")
    ] = None,
    capacity_latency: Annotated[float | None, typer.Option(help="Fake LLM latency there.")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL URL (default: AGENTQ_DATABASE_URL if PostgreSQL, else a new database)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Benchmark agentq against bare Celery on the same Redis (see ops/bench/README.md)."""
    cfg = SHORT if short else FULL
    given: dict[str, Any] = {
        k: v
        for k, v in dict(
            conversations=conversations,
            rate=rate,
            duration=duration,
            burst=burst,
            latency=latency,
            debounce=debounce,
            pool=pool,
            concurrency=concurrency,
            workers=workers,
            noop_tasks=noop_tasks,
            capacity=capacity,
            capacity_latency=capacity_latency,
        ).items()
        if v is not None
    }
    cfg = replace(cfg, **given)
    env_url = os.environ.get("AGENTQ_DATABASE_URL", "")
    url = database_url or (env_url if env_url.startswith("postgresql") else None)
    # Stopped (Ctrl-C or SIGTERM), still stop its processes and drop its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_bench(cfg, url)
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))


if __name__ == "__main__":
    typer.run(bench)
