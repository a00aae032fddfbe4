"""The `agentq` command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Annotated

import typer

from agentq.agents_cli import agents_app
from agentq.api.cli import api_app, keys_app
from agentq.bench import bench as bench_command
from agentq.chaos import chaos as chaos_command
from agentq.ops_cli import flower as ops_flower
from agentq.ops_cli import jobs_app
from agentq.ops_cli import status as ops_status
from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE

app = typer.Typer(
    help="agentq: a conversation-aware job queue for LLM agents.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(agents_app, name="agents")
app.add_typer(api_app, name="api")
app.add_typer(keys_app, name="keys")
app.command("status")(ops_status)
app.add_typer(jobs_app, name="jobs")
app.command("flower", context_settings={"allow_extra_args": True})(ops_flower)
app.command("chaos")(chaos_command)
app.command("bench")(bench_command)

QUEUE_ALIASES = {"control": CONTROL_QUEUE, "llm": LLM_QUEUE}


def _setup_logging(level: str = "INFO") -> None:
    from agentq.logging import setup_logging

    setup_logging(level)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: Annotated[
        str | None, typer.Option(help="Database URL (default: AGENTQ_DATABASE_URL).")
    ] = None,
) -> None:
    """Create or migrate the database schema (safe to run again)."""
    from agentq.store.migrate import upgrade

    upgrade(url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def worker(
    queues: Annotated[
        str,
        typer.Option("--queues", "-Q", help="Comma-separated: control, llm (or full queue names)."),
    ] = "control,llm",
    pool: Annotated[
        str, typer.Option("--pool", "-P", help="threads (default), gevent, prefork or solo.")
    ] = "threads",
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Tasks in flight in this process.")
    ] = 50,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option("--name", "-n", help="Worker node name.")] = None,
) -> None:
    """Run a Celery worker. LLM calls wait on the network: use a threads or gevent pool."""
    from agentq.runtime.app import app as celery_app

    names = [QUEUE_ALIASES.get(q.strip(), q.strip()) for q in queues.split(",") if q.strip()]
    argv = [
        "worker",
        "-Q",
        ",".join(names),
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)


@app.command()
def beat(
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between passes (default: AGENTQ_RECONCILE_INTERVAL_SECONDS)."),
    ] = None,
) -> None:
    """Run the reconciler: re-drive from the database whatever is unfinished, every interval."""
    from agentq.config import get_settings
    from agentq.ops.reconcile import reconcile_once

    _setup_logging()
    every = interval or get_settings().reconcile_interval_seconds
    log = logging.getLogger("agentq.beat")
    log.info("reconciler running every %.1fs", every)
    while True:
        started = time.monotonic()
        try:
            reconcile_once()
        except Exception as exc:  # noqa: BLE001 - a DB or Redis outage: try again next pass
            log.warning("reconcile pass failed: %s", type(exc).__name__)
        time.sleep(max(0.0, every - (time.monotonic() - started)))


@app.command()
def reconcile(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Run one reconciler pass now and say what it re-drove."""
    from agentq.ops.reconcile import reconcile_once

    report = reconcile_once().as_dict()
    if as_json:
        typer.echo(json.dumps(report))
    else:
        for k, v in report.items():
            typer.echo(f"{k:<18} {v}")


@app.command("fake-llm")
def fake_llm(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8099,
    latency: Annotated[float, typer.Option(help="Seconds before each answer.")] = 0.05,
    jitter: Annotated[float, typer.Option(help="Extra random seconds, 0..jitter.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Fraction of requests answered 500.")] = 0.0,
    rate_429: Annotated[
        float, typer.Option("--rate-429", help="Fraction answered 429 with Retry-After.")
    ] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Retry-After seconds on 429s.")] = 1.0,
) -> None:
    """Serve an OpenAI-compatible chat-completions API with set latency and errors."""
    from agentq.fake_llm import FakeLLMConfig, run

    run(
        host,
        port,
        FakeLLMConfig(
            latency=latency,
            jitter=jitter,
            error_rate=error_rate,
            rate_429=rate_429,
            retry_after=retry_after,
        ),
    )


@app.command()
def post(
    conversation_id: Annotated[str, typer.Argument(help="Conversation id.")],
    author_id: Annotated[str, typer.Argument(help="Participant id of the author.")],
    content: Annotated[str, typer.Argument(help="Message text.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the reply (0: don't).")] = 0.0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Post at most once with this key.")
    ] = None,
) -> None:
    """Post a message into a conversation (and optionally wait for the reply)."""
    from agentq.client import Client
    from agentq.errors import AgentqError

    client = Client()
    try:
        msg = client.post_message(conversation_id, author_id, content, idempotency_key)
        typer.echo(f"message {msg.id} seq {msg.seq}{' (duplicate)' if msg.duplicate else ''}")
        if wait > 0:
            reply = client.wait_for_reply(msg.id, timeout=wait)
            typer.echo(reply.content)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    turns: Annotated[int, typer.Option(help="How many user turns.")] = 4,
    latency: Annotated[float, typer.Option(help="Fake LLM latency in seconds.")] = 0.4,
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 2,
) -> None:
    """Run a short conversation of a user and two agents on the embedded default."""
    from agentq.demo import run_demo

    sys.exit(run_demo(turns=turns, latency=latency, workers=workers))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
