"""`agentq post`, `demo`, `fake-llm` and `bench`: try agentq, and measure it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agentq.cli.options import Tenant


def post(
    conversation_id: Annotated[str, typer.Argument(help="Conversation id.")],
    author_id: Annotated[str, typer.Argument(help="Participant id of the author.")],
    content: Annotated[str, typer.Argument(help="Message text.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the reply (0: don't).")] = 0.0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Post at most once with this key.")
    ] = None,
    tenant: Tenant = None,
) -> None:
    """Post a message into a conversation of the tenant; --wait for the reply.

    Ids: `agentq conversations create --agent NAME --user ID` prints them."""
    from agentq.client import Client
    from agentq.errors import AgentqError

    try:
        client = Client(tenant=tenant)
        msg = client.post_message(conversation_id, author_id, content, idempotency_key)
        typer.echo(f"message {msg.id} seq {msg.seq}{' (duplicate)' if msg.duplicate else ''}")
        if wait > 0:
            reply = client.wait_for_reply(msg.id, timeout=wait)
            typer.echo(reply.content)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def demo(
    turns: Annotated[int, typer.Option(help="How many user turns.")] = 4,
    latency: Annotated[float, typer.Option(help="Fake LLM latency in seconds.")] = 0.4,
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 2,
) -> None:
    """Run a short conversation of a user and two agents on the embedded default."""
    from agentq.demo import run_demo

    sys.exit(run_demo(turns=turns, latency=latency, workers=workers))


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
    from agentq.testing.fake_llm import FakeLLMConfig, run

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


def dev(
    port: Annotated[int, typer.Option(help="Port of the HTTP API.")] = 8000,
    host: Annotated[str, typer.Option(help="Address of the HTTP API.")] = "127.0.0.1",
    database_url: Annotated[
        str | None,
        typer.Option(help="A database to use (e.g. PostgreSQL); default: ./agentq.db (SQLite)."),
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="A Redis to use; default: one it starts itself.")
    ] = None,
    latency: Annotated[float, typer.Option(help="Fake LLM latency in seconds.")] = 0.3,
    env_file: Annotated[
        bool,
        typer.Option(help="Write ./.env so that a `python` here finds the same stack."),
    ] = True,
) -> None:
    """Run a local stack until Ctrl-C: API, workers, reconciler, fake LLM, Redis, SQLite."""
    from agentq.dev import run_dev

    sys.exit(
        run_dev(
            host=host,
            port=port,
            database_url=database_url,
            redis_url=redis_url,
            latency=latency,
            write_env=env_file,
        )
    )
