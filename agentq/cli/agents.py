"""`agentq agents ...`: create, list, show, update, delete, start, stop, pause, resume and
check agents of a tenant (`--tenant`, else $AGENTQ_TENANT, else "default");
`agentq models list`: the operator's model profiles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from agentq.errors import AgentqError

if TYPE_CHECKING:
    from agentq.schemas import AgentOut

agents_app = typer.Typer(help="Agents: lifecycle and health.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Name = Annotated[str, typer.Argument(help="Agent name (any case) or id.")]
Tenant = Annotated[
    str | None,
    typer.Option(
        envvar="AGENTQ_TENANT",
        help='The tenant whose agents these are (created if new). Default: "default".',
        show_default=False,
    ),
]


def _tenant_id(tenant: str | None) -> uuid.UUID:
    from agentq.ops.tenants import tenant_id

    try:
        return tenant_id(tenant)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _print(agents: list[AgentOut], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([a.model_dump(mode="json") for a in agents], indent=2))
        return
    typer.echo(f"{'NAME':<20} {'STATUS':<9} {'PROVIDER':<10} {'LIMITS':<12} {'RESPONSES':>9}")
    for a in agents:
        limits = f"{a.max_concurrent_jobs}x {a.rate_limit_per_minute}/min"
        typer.echo(
            f"{a.name:<20} {a.status:<9} {a.provider:<10} {limits:<12} {a.total_responses:>9}"
        )


def _run(fn: Callable[..., AgentOut], *args: str, as_json: bool = False) -> None:
    try:
        result = fn(*args)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _print([result], as_json)


@agents_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="One word; used in @mentions.")],
    role: Annotated[str, typer.Option(help="What the agent does.")] = "",
    backstory: Annotated[str, typer.Option(help="Background for the system prompt.")] = "",
    goal: Annotated[str, typer.Option(help="What it tries to achieve.")] = "",
    profile: Annotated[
        str, typer.Option(help="A model profile (see `agentq models list`).")
    ] = "default",
    max_tokens: Annotated[
        int | None, typer.Option(help="Reply token limit, within the profile's cap.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    max_concurrent_jobs: Annotated[int, typer.Option(help="Jobs at once, across all workers.")] = 1,
    rate_limit: Annotated[
        int, typer.Option(help="Job starts per minute, across all workers.")
    ] = 10,
    tenant: Tenant = None,
    as_json: AsJson = False,
) -> None:
    """Create an agent of the tenant on a model profile (names are unique in a tenant,
    in any case)."""
    from agentq.ops.agents import create_agent

    cfg: dict[str, object] = {"profile": profile}
    if max_tokens is not None:
        cfg["max_tokens"] = max_tokens
    if temperature is not None:
        cfg["temperature"] = temperature
    _run(
        lambda: create_agent(
            name,
            role=role,
            backstory=backstory,
            goal=goal,
            model_config=cfg,
            max_concurrent_jobs=max_concurrent_jobs,
            rate_limit_per_minute=rate_limit,
            tenant_id=_tenant_id(tenant),
        ),
        as_json=as_json,
    )


@agents_app.command("list")
def list_(tenant: Tenant = None, as_json: AsJson = False) -> None:
    """List the tenant's agents with their status and limits."""
    from agentq.ops.agents import list_agents

    _print(list_agents(tenant_id=_tenant_id(tenant)), as_json)


@agents_app.command("get")
def get(name: Name, tenant: Tenant = None, as_json: AsJson = False) -> None:
    """Show one agent."""
    from agentq.ops.agents import get_agent

    _run(lambda: get_agent(name, tenant_id=_tenant_id(tenant)), as_json=as_json)


@agents_app.command("update")
def update(
    name: Name,
    role: Annotated[str | None, typer.Option(help="What the agent does.")] = None,
    backstory: Annotated[str | None, typer.Option(help="Background.")] = None,
    goal: Annotated[str | None, typer.Option(help="What it tries to achieve.")] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help='Its system prompt ("" removes it).')
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Another model profile.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Reply token limit, within the profile's cap.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="0 to 2.")] = None,
    max_concurrent_jobs: Annotated[int | None, typer.Option(help="Jobs at once.")] = None,
    rate_limit: Annotated[int | None, typer.Option(help="Job starts per minute.")] = None,
    tenant: Tenant = None,
    as_json: AsJson = False,
) -> None:
    """Change an agent: only the options given change (model options within its
    profile's caps)."""
    from agentq.ops.agents import update_agent

    changes: dict[str, object] = {
        k: v
        for k, v in {
            "role": role,
            "backstory": backstory,
            "goal": goal,
            "max_concurrent_jobs": max_concurrent_jobs,
            "rate_limit_per_minute": rate_limit,
        }.items()
        if v is not None
    }
    if system_prompt is not None:
        changes["system_prompt"] = system_prompt or None
    cfg = {
        k: v
        for k, v in {
            "profile": profile,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }.items()
        if v is not None
    }
    if cfg:
        changes["model_config"] = cfg
    _run(lambda: update_agent(name, tenant_id=_tenant_id(tenant), **changes), as_json=as_json)


@agents_app.command("delete")
def delete(name: Name, tenant: Tenant = None) -> None:
    """Delete an agent (soft): it is stopped (its waiting jobs fail visibly), then gone
    from lists, never chosen to answer again; its name is free again."""
    from agentq.ops.agents import delete_agent

    try:
        delete_agent(name, tenant_id=_tenant_id(tenant))
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"deleted agent {name}")


def _lifecycle(command: str, doc: str) -> None:
    def run(name: Name, tenant: Tenant = None, as_json: AsJson = False) -> None:
        from agentq.ops import agents

        def act() -> AgentOut:
            found = agents.get_agent(name, tenant_id=_tenant_id(tenant))
            result: AgentOut = getattr(agents, f"{command}_agent")(found.id)
            return result

        _run(act, as_json=as_json)

    run.__doc__ = doc
    agents_app.command(command)(run)


_lifecycle("start", "Start a stopped agent.")
_lifecycle("stop", "Stop an agent: no new jobs; its waiting jobs fail visibly.")
_lifecycle("pause", "Pause an agent: its jobs wait, and run in order on resume.")
_lifecycle("resume", "Resume a paused agent.")


@agents_app.command("check")
def check(name: Name, tenant: Tenant = None, as_json: AsJson = False) -> None:
    """Call the agent's provider with a tiny request and report its health."""
    from agentq.ops.agents import check_agent, get_agent

    try:
        report = check_agent(get_agent(name, tenant_id=_tenant_id(tenant)).id)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report))
    else:
        state = "ok" if report["ok"] else "FAILING"
        why = "" if report["ok"] else f" {report['error']} {report['status_code'] or ''}"
        typer.echo(
            f"{report['agent']}: {state} (profile {report['profile']}, "
            f"{report['latency_ms']} ms){why.rstrip()}"
        )
    if not report["ok"]:
        raise typer.Exit(1)


models_app = typer.Typer(help="Model profiles: what agents may use.", no_args_is_help=True)


@models_app.command("list")
def models_list(as_json: AsJson = False) -> None:
    """List the model profiles (AGENTQ_MODEL_PROFILES and AGENTQ_MODEL_PROFILES_FILE):
    name, provider, endpoint host, model and caps. Key values are never shown."""
    from agentq import profiles

    try:
        found = profiles.all()
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = [
        {
            "name": p.name,
            "provider": p.provider,
            "host": p.host,
            "model": p.model,
            "api_key_env": p.api_key_env,
            "max_tokens": p.max_tokens,
            "timeout": p.timeout,
            "max_concurrent_jobs": p.max_concurrent_jobs,
            "rate_limit_per_minute": p.rate_limit_per_minute,
        }
        for p in found.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        f"{'NAME':<16} {'PROVIDER':<10} {'HOST':<24} {'MODEL':<20} {'TOKENS':>7} "
        f"{'TIMEOUT':>8} {'JOBS':>5} {'RATE/MIN':>9}"
    )
    for r in rows:
        typer.echo(
            f"{r['name']:<16} {r['provider']:<10} {r['host']:<24} {r['model']:<20} "
            f"{r['max_tokens']:>7} {r['timeout']:>7g}s {r['max_concurrent_jobs']:>5} "
            f"{r['rate_limit_per_minute']:>9}"
        )
