"""The `agentq` command line.

One Typer app assembled from small modules, each a group of commands. Every module here
imports only Typer at load time: the work of a command (the API, the database, Celery,
the benchmark) is imported inside the command's function, so that `agentq --help` and a
mistyped option answer at once.

    agentq/cli/serve.py    worker, beat, reconcile, api, flower: the long-running processes
    agentq/cli/db.py       db upgrade
    agentq/cli/agents.py   agents create|list|get|start|stop|pause|resume|check; models list
    agentq/cli/jobs.py     status, jobs list|show|retry
    agentq/cli/keys.py     keys create|list|revoke
    agentq/cli/tenants.py  tenants limit
    agentq/cli/tools.py    post, demo, fake-llm
    agentq/cli/options.py  options shared by groups (--tenant for ids of conversations, jobs)
    agentq/bench/command.py  bench (the benchmark is its own package, loaded when it runs)
"""

from __future__ import annotations

import typer

from agentq.bench.command import bench
from agentq.cli import serve, tools
from agentq.cli.agents import agents_app, models_app
from agentq.cli.db import db_app
from agentq.cli.jobs import jobs_app, status
from agentq.cli.keys import keys_app
from agentq.cli.tenants import tenants_app

app = typer.Typer(
    help="agentq: a conversation-aware job queue for LLM agents.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(agents_app, name="agents")
app.add_typer(models_app, name="models")
app.add_typer(serve.api_app, name="api")
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(jobs_app, name="jobs")
app.command("status")(status)
app.command("worker")(serve.worker)
app.command("beat")(serve.beat)
app.command("reconcile")(serve.reconcile)
app.command("flower", context_settings={"allow_extra_args": True})(serve.flower)
app.command("post")(tools.post)
app.command("demo")(tools.demo)
app.command("dev")(tools.dev)
app.command("fake-llm")(tools.fake_llm)
app.command("bench")(bench)


def main() -> None:
    app()
