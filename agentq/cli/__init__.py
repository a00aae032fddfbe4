"""The `agentq` command line.

One Typer app assembled from small modules, each a group of commands. Every module here
imports only Typer at load time: the work of a command (the API, the database, Celery,
the benchmark) is imported inside the command's function, so that `agentq --help` and a
mistyped option answer at once.

    agentq/cli/serve.py    worker, beat, reconcile, api, flower: the long-running processes
    agentq/cli/db.py       db upgrade|current|history|downgrade
    agentq/cli/conversations.py  conversations create|list|show|add-participant
    agentq/cli/agents.py   agents create|list|get|start|stop|pause|resume|check; models list
    agentq/cli/jobs.py     status, jobs list|show|retry
    agentq/cli/keys.py     keys create|list|revoke
    agentq/cli/tenants.py  tenants limit
    agentq/cli/tools.py    post, demo, dev, fake-llm (dev's stack: agentq/dev.py)
    agentq/cli/options.py  options shared by groups (--tenant for ids of conversations, jobs)
    agentq/bench/command.py  bench (the benchmark is its own package, loaded when it runs)
"""

from __future__ import annotations

from typing import Annotated

import typer

from agentq.bench.command import bench
from agentq.cli import serve, tools
from agentq.cli.agents import agents_app, models_app
from agentq.cli.conversations import conversations_app
from agentq.cli.db import db_app
from agentq.cli.jobs import jobs_app, status
from agentq.cli.keys import keys_app
from agentq.cli.tenants import tenants_app

START, RUN, OPERATE, TEST = "Start here", "Run", "Operate", "Test"

app = typer.Typer(
    help="agentq: a conversation-aware job queue for LLM agents.", no_args_is_help=True
)


def _version(value: bool) -> None:
    if value:
        from agentq import __version__

        typer.echo(f"agentq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """agentq: a conversation-aware job queue for LLM agents."""


app.command("demo", rich_help_panel=START)(tools.demo)
app.command("dev", rich_help_panel=START)(tools.dev)
app.command("worker", rich_help_panel=RUN)(serve.worker)
app.command("beat", rich_help_panel=RUN)(serve.beat)
app.add_typer(serve.api_app, name="api", rich_help_panel=RUN)
app.command("flower", context_settings={"allow_extra_args": True}, rich_help_panel=RUN)(
    serve.flower
)
app.command("status", rich_help_panel=OPERATE)(status)
app.add_typer(agents_app, name="agents", rich_help_panel=OPERATE)
app.add_typer(models_app, name="models", rich_help_panel=OPERATE)
app.add_typer(conversations_app, name="conversations", rich_help_panel=OPERATE)
app.command("post", rich_help_panel=OPERATE)(tools.post)
app.add_typer(jobs_app, name="jobs", rich_help_panel=OPERATE)
app.add_typer(keys_app, name="keys", rich_help_panel=OPERATE)
app.add_typer(tenants_app, name="tenants", rich_help_panel=OPERATE)
app.add_typer(db_app, name="db", rich_help_panel=OPERATE)
app.command("reconcile", rich_help_panel=OPERATE)(serve.reconcile)
app.command("bench", rich_help_panel=TEST)(bench)
app.command("fake-llm", rich_help_panel=TEST)(tools.fake_llm)


def main() -> None:
    app()
