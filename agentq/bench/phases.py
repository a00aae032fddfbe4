"""The agentq phases of a run: latency at an offered rate, throughput of a burst, and
capacity of one LLM worker process."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentq.bench.config import BENCH_ENV, BenchConfig
from agentq.bench.measure import Phase, RSSSampler, percentiles, span_rate, wait_for, worker_pids
from agentq.bench.turns import backlog, settled, turns_of


def make_dms(n: int, producers: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
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


def wait_settled(conv_ids: list[uuid.UUID], timeout: float, what: str) -> None:
    try:
        wait_for(lambda: settled(conv_ids), timeout, what)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {backlog(conv_ids)}") from None


def post_schedule(
    targets: list[tuple[uuid.UUID, uuid.UUID]], count: int, rate: float, producers: int
) -> list[float]:
    """Post `count` messages round-robin over `targets`, `rate` a second (0: at once);
    returns each post's API latency in ms."""
    from agentq.turn import post_message

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


def latency_phase(
    cfg: BenchConfig,
    rate: float,
    dms: list[tuple[uuid.UUID, uuid.UUID]],
    llm: Any,
    max_wait: float,
) -> dict[str, Any]:
    """`rate` messages a second for `cfg.duration` over `dms`, the latency split of every
    turn. Only turns replied after it started count: an earlier rate's replies all came
    before (each phase waits for its conversations to settle)."""
    step = Phase(f"latency phase: {rate:g} messages/s for {cfg.duration:g}s")
    llm.reset_stats()
    count = int(rate * cfg.duration)
    since = time.time()
    t0 = time.monotonic()
    api_ms = post_schedule(dms, count, rate, cfg.producers)
    offered = count / max(time.monotonic() - t0, 1e-9)
    ids = [c for c, _ in dms]
    # Past saturation the backlog drains at the box's own pace (10 turns/s or more).
    wait_settled(ids, 120 + cfg.duration + count / 10, "the latency phase's replies")
    turns = [t for t in turns_of(ids, cfg.debounce, max_wait) if t["replied"] >= since]
    step.done()
    return {
        "rate": rate,
        "messages": count,
        "offered_rate": round(offered, 1),
        "turns": len(turns),
        "turns_per_s": span_rate(turns),
        "api_post_ms": percentiles(api_ms),
        **{
            k: percentiles([t[k] for t in turns])
            for k in ("e2e", "debounce", "queue", "llm", "completion", "overhead", "fire_error")
        },
        "peak_llm_in_flight_per_worker": llm.stats()["peak_in_flight"] / cfg.workers,
    }


def agentq_phases(cfg: BenchConfig, env: dict[str, str], llm: Any, log_dir: Path) -> dict[str, Any]:
    from agentq.testing.stack import Stack

    out: dict[str, Any] = {}
    n_convs = max(cfg.conversations, cfg.burst)
    with Stack(env, log_dir=log_dir) as stack, RSSSampler(lambda: worker_pids(stack)) as rss:
        with Phase(f"agentq: {cfg.workers} worker(s), {n_convs} conversations"):
            for _ in range(cfg.workers):
                stack.start_worker(pool=cfg.pool, concurrency=cfg.concurrency)
            stack.start_reconciler(interval=float(BENCH_ENV["AGENTQ_RECONCILE_INTERVAL_SECONDS"]))
            dms = make_dms(n_convs, cfg.producers)
        max_wait = float(env["AGENTQ_MAX_WAIT_SECONDS"])

        # 1. latency, once at each offered rate, on the same conversations. First a warm-up,
        # not measured: whichever rate ran first paid the fresh worker's cold start
        # (overhead p95 270-430 ms against 17-25 ms warm, --short, rates in either order).
        lat = dms[: cfg.conversations]
        with Phase("warm-up: one message a conversation at once, not measured"):
            post_schedule(lat, len(lat), 0, cfg.producers)
            wait_settled([c for c, _ in lat], 120, "the warm-up's replies")
        runs = [latency_phase(cfg, rate, lat, llm, max_wait) for rate in cfg.offered_rates()]
        out["latency"], out["latency_by_rate"] = runs[0], runs

        # 2. throughput: one message a conversation, all at once
        step = Phase(f"throughput phase: {cfg.burst} messages at once")
        burst = dms[: cfg.burst]
        llm.reset_stats()
        since = time.time()
        post_schedule(burst, cfg.burst, 0, cfg.producers)
        ids = [c for c, _ in burst]
        wait_settled(ids, 300, "the throughput phase's replies")
        # By reply time: the latency phase's replies all came before `since`, and a reply
        # comes well after its message, whatever clock skew the processes' stamps carry.
        turns = [t for t in turns_of(ids, cfg.debounce, max_wait) if t["replied"] >= since]
        out["throughput"] = {
            "messages": cfg.burst,
            "turns": len(turns),
            "turns_per_s": span_rate(turns),
            "peak_llm_in_flight_per_worker": llm.stats()["peak_in_flight"] / cfg.workers,
        }
        step.done()
        out["worker_rss_mb"] = rss.peak_mb()
    return out


def capacity_phase(
    cfg: BenchConfig, env: dict[str, str], llm: Any, log_dir: Path
) -> dict[str, Any]:
    """`capacity` calls held at once by ONE LLM worker process (control work elsewhere)."""
    from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE
    from agentq.testing.stack import Stack

    n = cfg.capacity
    dms = make_dms(n, cfg.producers)
    llm.control(latency=cfg.capacity_latency, jitter=0.0)
    llm.reset_stats()
    with Stack(env, log_dir=log_dir) as stack:
        stack.start_worker(queues=(CONTROL_QUEUE,), pool=cfg.pool, concurrency=50, name="control")
        stack.start_worker(queues=(LLM_QUEUE,), pool=cfg.pool, concurrency=n, name="worker-llm")
        stack.start_reconciler(interval=5.0)
        with RSSSampler(lambda: worker_pids(stack)) as rss:
            t0 = time.monotonic()
            post_schedule(dms, n, 0, cfg.producers)
            ids = [c for c, _ in dms]
            wait_settled(ids, 120 + 6 * cfg.capacity_latency, "the capacity replies")
            elapsed = time.monotonic() - t0
        turns = turns_of(ids, cfg.debounce, float(env["AGENTQ_MAX_WAIT_SECONDS"]))
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
