"""What one turn's control work costs, in-process (issue 19): CPU, SQL statements, commits,
Redis commands and Celery messages, step by step.

    .venv/bin/python ops/bench/turn_cost.py                  # 200 turns, a table
    .venv/bin/python ops/bench/turn_cost.py --statements     # and the SQL of each step
    .venv/bin/python ops/bench/turn_cost.py --profile        # and a CPU profile of each step
    .venv/bin/python ops/bench/turn_cost.py --profile wall   # ... by wall time (waits too)
    .venv/bin/python ops/bench/turn_cost.py --json > turns.json

It makes a scratch PostgreSQL database (migrated with agentq's migrations, dropped at the
end), starts a Redis of its own and the fake LLM (a subprocess), then drives every turn
itself, in order, through the entry points the Celery tasks call: `turn.post_message`
(the producer), `turn.fire` (`agentq.dispatch`: dispatch and claim) and `turn.run_job`
(`agentq.run_job`: prepare, the LLM call over HTTP, complete). No worker runs: the Celery
messages those send go to the Redis broker and stay there.

How it counts, from outside agentq:

- CPU: `time.thread_time` of the thread that runs the steps (waits cost nothing, so
  the LLM's latency is not in it), split by step; `prepare` and `complete` inside
  `run_job` are timed by wrapping `agentq.turn.effects.prepare`/`complete` for the run
  (and `_dispatch`/`_advance`/`wake_agent`/`wake_tenant` when `complete` calls them: its
  follow-ups). agentq's own threads are read by their CPU clocks: `agentq-marks` (the
  outbox marks, one UPDATE a batch) counts as control work, the call loop
  (`agentq-calls`: HTTP, SSE parsing, token publishing) and the lease keepers do not.
- SQL statements, commits: SQLAlchemy `before_cursor_execute`, `commit` and `rollback`
  events on agentq's engine, charged to the step (or thread) that ran them. PostgreSQL
  round trips = statements + 2 a transaction (psycopg sends BEGIN on its own, then COMMIT).
  Rollbacks are mostly the marks' autocommit connection closing: no round trip.
- Redis commands: counted as redis-py sends them (single commands and pipelines, kombu's
  included), and checked against the server's `INFO commandstats`.
- Celery messages: Celery's `before_task_publish` signal.
- wall ms: the step's wall time (`run_job rest` holds the LLM call's).

`--profile` runs cProfile on the driving thread's CPU clock (or `--profile wall`), one
profile a step, and sums each up (SQLAlchemy execute, commit, Celery send, redis-py,
event publishing, logging). It inflates call-heavy code (Celery's most): rank by it, and
weigh with a sampling profiler (py-spy, see ops/bench/README.md).

Figures are per turn (totals / turns), after a warm-up that is not measured. Progress
goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: the steps of a turn, in travel order; CONTROL is what the issue's target counts
POST, FIRE, PREPARE, RUN_REST, COMPLETE, FOLLOW_UPS = (
    "post",
    "fire (dispatch + claim)",
    "prepare (start, prompt)",
    "run_job rest (recall, hand-off)",
    "complete (reply, effects)",
    "complete: follow-ups",
)
#: the background thread that writes the outbox's published marks: control work of the turns
MARKS = "thread agentq-marks"
STEPS = (POST, FIRE, PREPARE, RUN_REST, COMPLETE, FOLLOW_UPS)
CONTROL = (*STEPS, MARKS)
#: charged to no step: setup, warm-up, checks between steps
OUTSIDE = "outside"

FIGURES = (
    "cpu_ms",
    "wall_ms",
    "sql",
    "commits",
    "rollbacks",
    "pg_trips",
    "redis",
    "redis_trips",
    "celery",
)


def say(text: str) -> None:
    print(f"turn_cost: {text}", file=sys.stderr, flush=True)


@dataclass
class Tally:
    cpu_ns: int = 0
    wall_ns: int = 0
    sql: int = 0
    commits: int = 0
    rollbacks: int = 0
    redis: int = 0
    redis_trips: int = 0
    celery: int = 0
    statements: Counter[str] = field(default_factory=Counter)
    redis_commands: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)


class Meter:
    """Charges what happens to the step running on the driving thread (a stack of
    labels), or to the thread it happens on; switches cProfile profiles with the step."""

    def __init__(self, profile: str | None = None) -> None:
        self.main = threading.get_ident()
        self.stack: list[str] = [OUTSIDE]
        self.tallies: defaultdict[str, Tally] = defaultdict(Tally)
        self.lock = threading.Lock()
        self.mark = time.thread_time_ns()
        self.wall_mark = time.perf_counter_ns()
        self.profiles: dict[str, cProfile.Profile] | None = {} if profile else None
        #: cProfile's clock: this thread's CPU time, or wall time (waits included)
        self.timer = time.thread_time if profile == "cpu" else time.perf_counter

    def label(self) -> str:
        if threading.get_ident() == self.main:
            return self.stack[-1]
        return f"thread {threading.current_thread().name}"

    def _switch(self, new: str | None) -> None:
        now, wall = time.thread_time_ns(), time.perf_counter_ns()
        top = self.stack[-1]
        self.tallies[top].cpu_ns += now - self.mark
        self.tallies[top].wall_ns += wall - self.wall_mark
        if self.profiles is not None:
            if top != OUTSIDE:
                self.profiles[top].disable()
            nxt = new if new is not None else self.stack[-2]
            if nxt != OUTSIDE:
                self.profiles.setdefault(nxt, cProfile.Profile(self.timer)).enable()
        if new is None:
            self.stack.pop()
        else:
            self.stack.append(new)
        self.wall_mark = time.perf_counter_ns()
        self.mark = time.thread_time_ns()  # the switch itself is charged to no step

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        self._switch(label)
        try:
            yield
        finally:
            self._switch(None)

    def count(self, what: str, name: str = "") -> None:
        label = self.label()
        with self.lock:
            t = self.tallies[label]
            if what == "sql":
                t.sql += 1
                t.statements[name] += 1
            elif what == "redis":
                t.redis += 1
                t.redis_commands[name] += 1
            elif what == "celery":
                t.celery += 1
                t.tasks[name] += 1
            else:
                setattr(t, what, getattr(t, what) + 1)

    def reset(self) -> None:
        """Forget what was counted (after the warm-up)."""
        with self.lock:
            self.tallies.clear()
            if self.profiles is not None:
                self.profiles.clear()
        self.wall_mark = time.perf_counter_ns()
        self.mark = time.thread_time_ns()


# -- hooks: all from outside agentq --------------------------------------------------------


def hook_sql(meter: Meter, engine: Any) -> None:
    from sqlalchemy import event

    def before(_conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        meter.count("sql", statement)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "commit", lambda _conn: meter.count("commits"))
    event.listen(engine, "rollback", lambda _conn: meter.count("rollbacks"))


def _command_name(args: tuple[Any, ...]) -> str:
    name = args[0] if args else "?"
    name = name.decode() if isinstance(name, bytes) else str(name)
    return name.upper()


@contextlib.contextmanager
def hook_redis(meter: Meter) -> Iterator[None]:
    """Count the commands redis-py sends (kombu's too): one command, or a pipeline's."""
    from redis.connection import AbstractConnection

    send_command, pack_commands = AbstractConnection.send_command, AbstractConnection.pack_commands

    def counted_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        meter.count("redis_trips")
        meter.count("redis", _command_name(args))
        return send_command(self, *args, **kwargs)

    def counted_pack(self: Any, commands: Any) -> Any:
        commands = list(commands)
        meter.count("redis_trips")
        for cmd in commands:
            meter.count("redis", _command_name(tuple(cmd)))
        return pack_commands(self, commands)

    AbstractConnection.send_command = counted_send  # type: ignore[method-assign]
    AbstractConnection.pack_commands = counted_pack  # type: ignore[method-assign]
    try:
        yield
    finally:
        AbstractConnection.send_command = send_command  # type: ignore[method-assign]
        AbstractConnection.pack_commands = pack_commands  # type: ignore[method-assign]


@contextlib.contextmanager
def hook_celery(meter: Meter) -> Iterator[None]:
    from celery.signals import before_task_publish

    def sent(sender: Any = None, **_: Any) -> None:
        meter.count("celery", str(sender))

    before_task_publish.connect(sent, weak=False)
    try:
        yield
    finally:
        before_task_publish.disconnect(sent)


@contextlib.contextmanager
def wrapped_steps(meter: Meter) -> Iterator[None]:
    """Time the parts of `run_job` (and what `complete` calls next) as steps of their own:
    the module's functions are wrapped for the run and put back after."""
    from agentq.turn import effects

    def wrap(fn: Callable[..., Any], label: str, under: str | None) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if under is not None and meter.stack[-1] != under:
                return fn(*args, **kwargs)
            with meter.step(label):
                return fn(*args, **kwargs)

        return timed

    plan: dict[str, tuple[str, str | None]] = {
        "prepare": (PREPARE, RUN_REST),
        "complete": (COMPLETE, RUN_REST),
        "_dispatch": (FOLLOW_UPS, COMPLETE),
        "_advance": (FOLLOW_UPS, COMPLETE),
        "wake_agent": (FOLLOW_UPS, COMPLETE),
        "wake_tenant": (FOLLOW_UPS, COMPLETE),
    }
    saved = {name: getattr(effects, name) for name in plan if hasattr(effects, name)}
    for name, fn in saved.items():
        setattr(effects, name, wrap(fn, *plan[name]))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(effects, name, fn)


def thread_cpu_ns() -> dict[str, int]:
    """CPU time of each of this process's threads but the calling one, by name."""
    out: dict[str, int] = {}
    for t in threading.enumerate():
        if t.ident is None or t is threading.current_thread():
            continue
        try:
            ns = time.clock_gettime_ns(time.pthread_getcpuclockid(t.ident))
        except (OSError, AttributeError):
            continue
        out[t.name] = out.get(t.name, 0) + ns
    return out


def commandstats(client: Any) -> Counter[str]:
    """Commands the Redis server has run, by name (INFO itself left out). The server
    counts the commands its Lua scripts run too."""
    stats = client.info("commandstats")
    return Counter(
        {k.removeprefix("cmdstat_").upper(): int(v["calls"]) for k, v in stats.items()}
    ) - Counter({"INFO": 10**12})


_PARAM = re.compile(r"%\(\w+\)s|\$\d+|\?|\b\d+\b")
_PARAMS = re.compile(r"\?(?:\s*,\s*\?)+")


def normalized(statement: str) -> str:
    """The statement's first 100 characters, whitespace collapsed, parameters and literal
    numbers as `?` (a list of them as `?, ...`)."""
    text = " ".join(statement.split())
    return _PARAMS.sub("?, ...", _PARAM.sub("?", text))[:100]


# -- the run -------------------------------------------------------------------------------


@dataclass
class Config:
    turns: int = 200
    conversations: int = 20
    warmup: int = 10
    latency: float = 0.005
    pg_admin: str | None = None
    statements: bool = False
    profile: str | None = None  # "cpu" or "wall"
    json: bool = False


def environment(redis_url: str, llm_url: str, db_url: str) -> dict[str, str]:
    from agentq.bench.config import BENCH_ENV

    profiles = {
        "default": {
            "provider": "openai",
            "endpoint": llm_url,
            "model": "fake-model",
            "max_concurrent_jobs": 100_000,
            "rate_limit_per_minute": 1_000_000,
        }
    }
    return {
        **BENCH_ENV,
        "AGENTQ_DATABASE_URL": db_url,
        "AGENTQ_REDIS_URL": redis_url,
        "AGENTQ_DEBOUNCE_SECONDS": "0",
        "LLM_ENDPOINT": llm_url,
        "LLM_TIMEOUT": "30",
        "AGENTQ_MODEL_PROFILES": json.dumps(profiles),
    }


def run(cfg: Config) -> dict[str, Any]:
    from agentq.bench.measure import environment as using
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade
    from agentq.store.scratch import ADMIN_URL, create_database, drop_database
    from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer

    admin = cfg.pg_admin or ADMIN_URL
    load_before = os.getloadavg()
    say("setup: scratch database, Redis, fake LLM")
    url = create_database(admin, prefix="agentq_turncost")
    try:
        upgrade(url)
        with (
            EmbeddedRedis() as redis_server,
            FakeLLMServer(FakeLLMConfig(latency=cfg.latency)) as llm,
            using(environment(redis_server.url, llm.url, url)),
        ):
            result = measure(cfg, redis_server.url)
            # agentq's call watcher outlives this Redis: its reconnect warnings say nothing
            logging.getLogger("agentq.runtime.calls").setLevel(logging.ERROR)
    finally:
        drop_database(url, admin)
    result["load_before"] = [round(x, 2) for x in load_before]
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def measure(cfg: Config, redis_url: str) -> dict[str, Any]:
    import redis

    from agentq import turn
    from agentq.client import Client
    from agentq.store.session import get_engine

    meter = Meter(profile=cfg.profile)
    hook_sql(meter, get_engine())
    server = redis.Redis.from_url(redis_url)
    client = Client()
    agent = client.create_agent(
        "turn-cost", max_concurrent_jobs=100_000, rate_limit_per_minute=1_000_000
    )
    convs = []
    for i in range(cfg.conversations):
        conv = client.create_conversation(
            "dm", settings={"debounce_seconds": 0, "max_wait_seconds": 1}
        )
        client.add_participant(conv.id, agent=agent.id)
        user = client.add_participant(conv.id, user_id=f"user-{i}")
        convs.append((conv.id, user.id))

    def one_turn(i: int) -> None:
        conv_id, user_id = convs[i % len(convs)]
        with meter.step(POST):
            turn.post_message(conv_id, user_id, f"message {i}: how are things?")
        with meter.step(FIRE):
            out = turn.fire(conv_id)
        if out.claim is None:
            raise RuntimeError(f"turn {i}: fire claimed no job (effects: {out})")
        with meter.step(RUN_REST):
            turn.run_job(out.claim.job_id, out.claim.token)

    with hook_redis(meter), hook_celery(meter), wrapped_steps(meter):
        say(f"warm-up: {cfg.warmup} turns (not measured)")
        for i in range(cfg.warmup):
            one_turn(i)
        time.sleep(0.2)  # the warm-up's outbox marks are written
        meter.reset()
        threads0, process0, info0 = thread_cpu_ns(), time.process_time_ns(), commandstats(server)
        wall0 = time.perf_counter()
        say(f"measuring {cfg.turns} turns over {cfg.conversations} conversations")
        for i in range(cfg.turns):
            one_turn(cfg.warmup + i)
            if (i + 1) % 50 == 0:
                say(f"{i + 1} turns")
        time.sleep(0.2)  # the last outbox marks are written
        wall = time.perf_counter() - wall0
        info = commandstats(server)
        info.subtract(info0)
        process_ns = time.process_time_ns() - process0
        threads1 = thread_cpu_ns()
    for name, ns in threads1.items():
        meter.tallies[f"thread {name}"].cpu_ns += ns - threads0.get(name, 0)
    replies = client_replies(client, [c for c, _ in convs])
    return report(cfg, meter, wall, process_ns, info, replies)


def client_replies(client: Any, conv_ids: list[Any]) -> int:
    n = 0
    for conv_id in conv_ids:
        after = 0
        while page := client.list_messages(conv_id, after_seq=after, limit=100):
            n += sum(1 for m in page if m.role == "assistant")
            after = page[-1].seq
    return n


def report(
    cfg: Config, meter: Meter, wall: float, process_ns: int, info: Counter[str], replies: int
) -> dict[str, Any]:
    n = cfg.turns

    def per_turn(t: Tally) -> dict[str, float]:
        return {
            "cpu_ms": round(t.cpu_ns / n / 1e6, 3),
            "wall_ms": round(t.wall_ns / n / 1e6, 3),
            "sql": round(t.sql / n, 2),
            "commits": round(t.commits / n, 2),
            "rollbacks": round(t.rollbacks / n, 2),
            # psycopg sends BEGIN as a round trip of its own, COMMIT is one too
            "pg_trips": round((t.sql + 2 * t.commits) / n, 2),
            "redis": round(t.redis / n, 2),
            "redis_trips": round(t.redis_trips / n, 2),
            "celery": round(t.celery / n, 2),
        }

    tallies = dict(meter.tallies)
    steps = {label: per_turn(tallies.get(label, Tally())) for label in CONTROL}
    others = {
        label: per_turn(t)
        for label, t in sorted(tallies.items())
        if label not in CONTROL and label != OUTSIDE
    }
    control = {k: round(sum(s[k] for s in steps.values()), 3) for k in FIGURES}
    total_redis = sum(t.redis for t in tallies.values())
    result: dict[str, Any] = {
        "config": {
            "turns": n,
            "conversations": cfg.conversations,
            "warmup": cfg.warmup,
            "llm_latency_s": cfg.latency,
            "profiled": cfg.profile,
        },
        "steps": steps,
        "control": control,
        "other_threads": others,
        "outside": per_turn(tallies.get(OUTSIDE, Tally())),
        "checks": {
            "wall_s": round(wall, 2),
            "process_cpu_ms_per_turn": round(process_ns / n / 1e6, 3),
            # the rows above, added up: what the process CPU clock says, but for the switches
            "rows_cpu_ms_per_turn": round(
                control["cpu_ms"] + sum(o["cpu_ms"] for o in others.values()), 3
            ),
            "redis_commands_counted": total_redis,
            "redis_commands_server": info.total(),
            "redis_server_by_command": {k: round(v / n, 2) for k, v in info.most_common() if v},
            "replies": replies,
            "replies_expected": n + cfg.warmup,
        },
        "tasks": {
            label: {k: round(v / n, 2) for k, v in t.tasks.items()}
            for label, t in tallies.items()
            if t.tasks
        },
        "redis_commands": {
            label: {k: round(v / n, 2) for k, v in t.redis_commands.most_common()}
            for label, t in tallies.items()
            if t.redis_commands
        },
    }
    if cfg.statements:
        result["statements"] = {
            label: statements_of(t, n) for label, t in tallies.items() if t.statements
        }
    if meter.profiles:
        result["profiles"] = {label: profile_text(p, n) for label, p in meter.profiles.items()}
    return result


def statements_of(t: Tally, n: int) -> list[list[Any]]:
    merged: Counter[str] = Counter()
    for statement, count in t.statements.items():
        merged[normalized(statement)] += count
    return [[text, round(count / n, 2)] for text, count in merged.most_common()]


#: what a step's profile is summed up by: (label, file suffix, function), cumulative time;
#: they overlap (Celery's send includes its Redis LPUSH)
BUCKETS = (
    ("SQLAlchemy Connection.execute (statements, BEGIN)", "sqlalchemy/engine/base.py", "execute"),
    ("SQLAlchemy commit", "sqlalchemy/engine/base.py", "_commit_impl"),
    ("Celery send_task (with its LPUSH)", "celery/app/base.py", "send_task"),
    ("redis-py commands (Celery's too)", "redis/client.py", "execute_command"),
    ("redis-py pipelines", "redis/client.py", "execute"),
    ("agentq bus.publish (events)", "agentq/runtime/bus.py", "publish"),
    ("logging", "logging/__init__.py", "_log"),
)


def profile_text(p: cProfile.Profile, turns: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(p, stream=out)
    stats.sort_stats("cumulative").print_stats(25)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write("where the step's time goes (cumulative, overlapping), ms a turn:\n")
    for label, suffix, name in BUCKETS:
        spent = sum(
            ct for (file, _, func), (_, _, _, ct, _) in raw.items()
            if func == name and file.endswith(suffix)
        )  # fmt: skip
        share = spent / total * 100 if total else 0.0
        out.write(f"  {spent / turns * 1000:7.2f}  {share:5.1f} %  {label}\n")
    out.write(f"  {total / turns * 1000:7.2f}  100.0 %  the step\n")
    return out.getvalue()


# -- output --------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> list[str]:
    cfg, checks = result["config"], result["checks"]
    lines = [
        f"per-turn cost: {cfg['turns']} turns over {cfg['conversations']} conversations "
        f"(warm-up {cfg['warmup']}), fake LLM {cfg['llm_latency_s'] * 1000:g} ms, "
        f"load average before {result['load_before'][0]}, after {result['load_after'][0]}",
        *(
            [f"PROFILED ({cfg['profiled']} time): CPU figures include the profiler's own cost"]
            if cfg["profiled"]
            else []
        ),
        "",
        f"{'step':<36} {'CPU ms':>7} {'wall ms':>8} {'SQL':>6} {'commits':>8} {'PG trips':>8} {'Redis':>6} {'trips':>6} "
        f"{'Celery':>7}",
    ]

    def row(label: str, f: dict[str, float]) -> str:
        return (
            f"{label:<36} {f['cpu_ms']:>7.2f} {f['wall_ms']:>8.2f} {f['sql']:>6.2f} {f['commits']:>8.2f} {f['pg_trips']:>8.2f} "
            f"{f['redis']:>6.2f} {f['redis_trips']:>6.2f} {f['celery']:>7.2f}"
        )

    lines += [row(label, f) for label, f in result["steps"].items()]
    lines.append(row("control total", result["control"]))
    lines.append("")
    lines.append("not control work (the LLM call, lease keepers, other threads):")
    lines += [row(label, f) for label, f in result["other_threads"].items()]
    rollbacks = result["control"]["rollbacks"]
    lines += [
        "",
        f"rollbacks per turn (control): {rollbacks:g}; process CPU per turn, all threads: "
        f"{checks['process_cpu_ms_per_turn']:.2f} ms (the rows add up to "
        f"{checks['rows_cpu_ms_per_turn']:.2f}); wall {checks['wall_s']} s (the wall ms of "
        "run_job rest hold the LLM call)",
        f"Redis commands: {checks['redis_commands_counted']} sent (all threads), "
        f"{checks['redis_commands_server']} run by the server (INFO commandstats: with "
        "those its Lua scripts run)",
        f"replies written: {checks['replies']} of {checks['replies_expected']}",
    ]
    for label, tasks in result["tasks"].items():
        lines.append(f"Celery messages, {label}: {tasks}")
    for label, cmds in result["redis_commands"].items():
        lines.append(f"Redis commands, {label}: {cmds}")
    if "statements" in result:
        lines.append("")
        for label, stmts in result["statements"].items():
            lines.append(f"SQL of {label} (per turn):")
            lines += [f"  {count:>5.2f}  {text}" for text, count in stmts]
    return lines


def parse(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--turns", type=int, default=200, help="turns measured (200)")
    p.add_argument("--conversations", type=int, default=20, help="DMs the turns go round (20)")
    p.add_argument("--warmup", type=int, default=10, help="turns run first, not measured (10)")
    p.add_argument("--latency", type=float, default=0.005, help="fake LLM seconds (0.005)")
    p.add_argument("--pg-admin", help="PostgreSQL URL where a scratch database may be made")
    p.add_argument("--statements", action="store_true", help="the SQL of each step, counted")
    p.add_argument(
        "--profile",
        nargs="?",
        const="cpu",
        choices=("cpu", "wall"),
        help="cProfile top 25 of each step to stderr, by CPU time (default) or wall time",
    )
    p.add_argument("--json", action="store_true", help="machine output")
    a = p.parse_args(argv)
    for name in ("turns", "conversations"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1")
    if a.warmup < 0 or a.latency < 0:
        p.error("--warmup and --latency must not be negative")
    return Config(
        a.turns, a.conversations, a.warmup, a.latency, a.pg_admin, a.statements, a.profile, a.json
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    result = run(cfg)
    for label, text in result.pop("profiles", {}).items():
        print(
            f"\n=== profile: {label} ({cfg.profile} time, cumulative, all {cfg.turns} turns) ===",
            file=sys.stderr,
        )
        print(text, file=sys.stderr)
    if cfg.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(table(result)))
    ok = result["checks"]["replies"] == result["checks"]["replies_expected"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
