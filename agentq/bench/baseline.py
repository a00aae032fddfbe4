"""The bare-Celery baselines of `agentq bench`, when they are at hand.

The baselines (`ops/bench/baseline.py`: a no-op task and a hand-written one-task-a-message
pipeline) are workshop code, kept in the repository and not shipped in the package. A run
from a checkout finds them next to the package (or in the working directory) and compares
agentq with them; an installed agentq without a checkout runs the agentq phases only and
says that the baselines were skipped.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from agentq.bench.config import BenchConfig
from agentq.bench.measure import wait_for
from agentq.bench.phases import make_dms
from agentq.bench.turns import pipeline_done

#: the baselines' module, importable from the root of a checkout
BASELINE_MODULE = "ops.bench.baseline"
#: what the report says when there is no checkout to take the baselines from
SKIPPED = (
    "ops/bench/baseline.py not found (it is not installed with agentq): run `agentq bench` "
    "from a checkout of the repository to compare with bare Celery"
)


def find_checkout() -> Path | None:
    """The root of an agentq checkout holding the baselines: the one this package was
    imported from, else the working directory; None when neither has them."""
    here = Path(__file__).resolve().parents[2]
    for root in (here, Path.cwd()):
        if (root / "ops" / "bench" / "baseline.py").is_file():
            return root
    return None


def load(root: Path) -> ModuleType:
    """Import the baselines' module from the checkout at `root`."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(BASELINE_MODULE)


def baseline_phases(cfg: BenchConfig, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    root = find_checkout()
    if root is None:
        return {"skipped": SKIPPED}
    bb = load(root)
    benv = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p),
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
                BASELINE_MODULE,
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
        wait_for(
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
        wait_for(lambda: int(r.get(bb.NOOP_COUNTER) or 0) >= cfg.noop_tasks, 300, "no-op tasks")
        out["noop_tasks_per_s"] = round(cfg.noop_tasks / (time.monotonic() - t0), 1)
        r.close()

        # the hand-written pipeline: its own conversations, one message each, all at once
        os.environ.update(
            {k: benv[k] for k in ("AGENTQ_BENCH_REDIS_URL", "AGENTQ_BENCH_DATABASE_URL")}
        )
        dms = make_dms(cfg.burst, cfg.producers)
        t0 = time.monotonic()
        with ThreadPoolExecutor(cfg.producers) as pool:
            list(pool.map(lambda d: bb.post(d[0], d[1], "benchmark message"), dms))
        ids = [c for c, _ in dms]
        wait_for(lambda: pipeline_done(ids), 300, "the pipeline's replies")
        out["pipeline_messages_per_s"] = round(cfg.burst / (time.monotonic() - t0), 1)
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
        for proc in procs:
            proc.wait(30)
        log.close()
    return out
