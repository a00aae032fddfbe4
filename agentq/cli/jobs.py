"""`agentq status` and `agentq jobs list|show|retry`: what the queue holds and does.

Each prints a readable table, or JSON with `--json`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentq.cli.options import Tenant

jobs_app = typer.Typer(help="Inspect and retry jobs.", no_args_is_help=True)

#: seconds to wait for workers to answer a ping; an idle cluster answers in milliseconds
PING_TIMEOUT = 1.0
#: `agentq.states.JobStatus`, spelled out so that `--help` need not import it
JOB_STATUSES = ("waiting", "active", "delayed", "completed", "failed", "cancelled")

if TYPE_CHECKING:
    from rich.console import Console

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _console() -> Console:
    from rich.console import Console  # imported when a table is printed, not for --help

    return Console(width=200) if not sys.stdout.isatty() else Console()


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _workers() -> list[dict[str, Any]]:
    from agentq.runtime.broker import get_app

    try:
        inspect = get_app().control.inspect(timeout=PING_TIMEOUT)
        active = inspect.active_queues() or {}
        stats = inspect.stats() or {}
    except Exception:  # noqa: BLE001 - no broker: no workers to show
        return []
    out = []
    for name in sorted(set(active) | set(stats)):
        st = stats.get(name, {})
        pool = st.get("pool", {})
        out.append(
            {
                "name": name,
                "queues": sorted(q["name"] for q in active.get(name, [])),
                "pool": str(pool.get("implementation", "")).rsplit(":", 1)[-1],
                "concurrency": pool.get("max-concurrency"),
            }
        )
    return out


def collect_status() -> dict[str, Any]:
    """Queue depths, workers, jobs by status and agents, read from Redis and the DB."""
    from agentq.clock import utcnow
    from agentq.ops.agents import list_agents
    from agentq.runtime.metrics import queue_depths
    from agentq.store.stats import queue_state

    now = utcnow()
    state = queue_state(active_since=now, messages_since=now)
    by_status = state.jobs_by_status
    agents = [
        {
            "name": a.name,
            "status": a.status,
            "provider": a.provider,
            "active_jobs": state.active_jobs_by_agent.get(a.id, 0),
            "max_concurrent_jobs": a.max_concurrent_jobs,
            "total_responses": a.total_responses,
        }
        for a in sorted(list_agents(), key=lambda a: a.name)
    ]
    try:
        queues: dict[str, int | None] = dict(queue_depths())
    except Exception:  # noqa: BLE001 - Redis down is itself worth showing
        from agentq.runtime.broker import QUEUES

        queues = dict.fromkeys(QUEUES)
    return {
        "queues": queues,
        "workers": _workers(),
        "jobs": {s: by_status.get(s, 0) for s in JOB_STATUSES},
        "agents": agents,
        "tenants": _tenants(),
        "circuits": _circuits(),
    }


def _tenants() -> list[dict[str, Any]]:
    """Each tenant's pending messages (posted, not yet answered) against its limit."""
    from agentq.runtime.backpressure import limit_of
    from agentq.store.tenants import pending_by_tenant

    return [
        {"name": t.name, "id": str(t.id), "pending": n, "limit": limit_of(t)}
        for t, n in pending_by_tenant()
    ]


def _circuits() -> dict[str, dict[str, Any]]:
    """Model profiles whose circuit breaker is not closed: their jobs wait."""
    from agentq import profiles
    from agentq.runtime import breaker

    try:
        found = breaker.states(profiles.all())
    except Exception:  # noqa: BLE001 - Redis down shows in the queues already
        return {}
    return {
        name: {"state": c.state, "retry_in": round(c.retry_in, 1)}
        for name, c in found.items()
        if c.state != breaker.CLOSED
    }


def status(as_json: JsonOpt = False) -> None:
    """Queue depths, workers, active and failed jobs, agents."""
    data = collect_status()
    if as_json:
        _emit(data)
        return
    from rich.table import Table

    console = _console()
    t = Table("queue", "ready", title="Queues")
    for q, n in data["queues"].items():
        t.add_row(q, "unreachable" if n is None else str(n))
    console.print(t)
    t = Table("worker", "queues", "pool", "concurrency", title="Workers")
    for w in data["workers"]:
        t.add_row(w["name"], ", ".join(w["queues"]), w["pool"], str(w["concurrency"] or ""))
    if not data["workers"]:
        t.add_row("(none answered)", "", "", "")
    console.print(t)
    t = Table(*JOB_STATUSES, title="Jobs")
    t.add_row(*(str(data["jobs"][s]) for s in JOB_STATUSES))
    console.print(t)
    t = Table("agent", "status", "provider", "active jobs", "responses", title="Agents")
    for a in data["agents"]:
        t.add_row(
            a["name"],
            a["status"],
            a["provider"],
            f"{a['active_jobs']}/{a['max_concurrent_jobs']}",
            str(a["total_responses"]),
        )
    console.print(t)
    t = Table("tenant", "pending messages", "limit", title="Tenants")
    for tn in data["tenants"]:
        t.add_row(tn["name"], str(tn["pending"]), str(tn["limit"] or "none"))
    console.print(t)
    opened = ", ".join(
        f"{n} ({c['state']}, {c['retry_in']:g} s)" for n, c in data["circuits"].items()
    )
    console.print(f"Open circuits: {opened or 'none'}")


def _job_rows(status_: str | None, agent: str | None, limit: int) -> list[dict[str, Any]]:
    from agentq.store.reads import operator_jobs

    return operator_jobs(status_, agent, limit)


@jobs_app.command("list")
def jobs_list(
    status_: Annotated[
        str | None, typer.Option("--status", help=f"One of {', '.join(JOB_STATUSES)}.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's jobs (by name).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    if status_ and status_ not in JOB_STATUSES:
        raise typer.BadParameter(f"unknown status {status_!r}", param_hint="--status")
    rows = _job_rows(status_, agent, limit)
    if as_json:
        _emit(rows)
        return
    from rich.table import Table

    t = Table(
        "job",
        "agent",
        "conversation",
        "status",
        "attempts",
        "created",
        "reason",
        title=f"Jobs ({status_ or 'all'})",
    )
    for r in rows:
        t.add_row(
            r["id"],
            r["agent"],
            r["conversation_id"][:8],
            r["status"],
            f"{r['attempts']}/{r['max_attempts']}",
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}",
            (r["failure_reason"] or "")[:60],
        )
    _console().print(t)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    tenant: Tenant = None,
    as_json: JsonOpt = False,
) -> None:
    """One job of the tenant: state, attempts, failure reason, triggering messages,
    reply id."""
    from agentq.client import Client
    from agentq.errors import AgentqError

    try:
        job = Client(tenant=tenant).get_job(job_id)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # Bodies are for the conversation's readers; the operator view shows ids only.
    data = job.model_dump(mode="json", exclude={"reply"})
    data["reply_message_id"] = str(job.reply.id) if job.reply else None
    if as_json:
        _emit(data)
        return
    from rich.table import Table

    t = Table("field", "value", title=f"Job {job_id}", show_header=False)
    for k, v in data.items():
        t.add_row(k, "" if v is None else str(v))
    _console().print(t)


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str | None, typer.Argument(help="Job id.")] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Retry every failed job of the tenant.")
    ] = False,
    tenant: Tenant = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --all-failed: do not ask for confirmation.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give a failed or cancelled job of the tenant fresh attempts; it runs in its
    conversation's turn. --all-failed asks first, and shows its progress on stderr."""
    from agentq.client import Client
    from agentq.errors import AgentqError

    if bool(job_id) == all_failed:
        raise typer.BadParameter("give a job id or --all-failed (not both)")
    try:
        client = Client(tenant=tenant)
        ids = [job_id] if job_id else _failed_ids(client)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if all_failed and ids and not yes:
        typer.confirm(
            f"Retry {len(ids)} failed job(s) of tenant {client.tenant}?", abort=True, err=True
        )
    results, errors = [], 0
    with typer.progressbar(
        ids,
        label="retrying",
        file=sys.stderr,
        show_pos=True,
        hidden=as_json or not (all_failed and ids),
    ) as bar:
        for jid in bar:
            try:
                job = client.retry_job(jid)
                results.append({"id": str(job.id), "status": job.status})
            except AgentqError as exc:
                errors += 1
                results.append({"id": str(jid), "error": str(exc)})
    if as_json:
        _emit(results)
    else:
        for r in results:
            typer.echo(f"{r['id']}  {r.get('status') or 'error: ' + r['error']}")
        if not results:
            typer.echo("no failed jobs")
    if all_failed and ids and not as_json:  # (the JSON says it all)
        typer.echo(f"retried {len(ids) - errors} of {len(ids)} ({errors} errors)", err=True)
    if errors:
        raise typer.Exit(2)


def _failed_ids(client: Any) -> list[str]:
    """The ids of the failed jobs of the client's tenant, newest first."""
    from agentq.ops import tenancy

    found: list[str] = []
    while page := tenancy.list_jobs(client, status="failed", limit=1000, offset=len(found)):
        found += [str(j.id) for j in page]
    return found
