"""The load and the faults of a chaos run: conversations to post into, producer threads
posting in bursts, and the fault thread (worker SIGKILLs, Redis FLUSHALL and restart,
provider storms and slow spells, optionally a PostgreSQL restart)."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ops.chaos.config import BODY_MARKER, CHAOS_API_KEY, LLM_TIMEOUT, ChaosConfig, ChaosReport

log = logging.getLogger("ops.chaos")


def restart_postgresql() -> None:
    """Restart the machine's PostgreSQL cluster (every database on it, shared or not)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
    )


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
        from agentq.client import Client

        with self._lock:
            self._seq += 1
            key = f"chaos-{self._seq}"
        mention = f"@{rng.choice(target.agents)} " if len(target.agents) > 1 else ""
        content = f"{mention}message {key}: {BODY_MARKER} and what should I eat? #{n}"
        for attempt in range(30):
            try:
                Client().post_message(
                    target.conversation_id, target.author_id, content, idempotency_key=key
                )
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

        self.flushed_at = datetime.now(UTC)
        redis.Redis.from_url(self.redis.url).flushall()

    def _restart_redis(self) -> None:
        self.redis.stop()
        time.sleep(2.0)
        self.redis.restart()
        self.redis_restarted_at = datetime.now(UTC)

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
