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
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

if __package__ in (None, ""):  # run as a script (`python ops/chaos/chaos.py`): find `ops`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agentq.store.scratch import create_database, drop_database  # noqa: E402
from ops.chaos.check import (  # noqa: E402
    RecoveryWatch,
    check_database,
    scan_logs,
    wait_settled,
)
from ops.chaos.config import (  # noqa: E402
    CHAOS_ENV,
    DEFAULT_PG_ADMIN,
    Anomalies,
    ChaosConfig,
    ChaosReport,
)
from ops.chaos.load import Faults, Producers, make_targets  # noqa: E402

__all__ = ["ChaosConfig", "ChaosReport", "check_database", "run_chaos"]


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
