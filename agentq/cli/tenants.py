"""`agentq tenants limit`: a tenant's own limit on pending messages (backpressure).

`agentq status` shows each tenant's pending messages against its limit."""

from __future__ import annotations

from typing import Annotated

import typer

tenants_app = typer.Typer(help="Tenants' limits.", no_args_is_help=True)


@tenants_app.command("limit")
def limit(
    tenant: Annotated[str, typer.Argument(help="The tenant's name.")],
    pending: Annotated[
        int | None,
        typer.Argument(
            help="Messages it may have pending (0: no limit); left out: the setting's "
            "(AGENTQ_TENANT_MAX_PENDING_MESSAGES)."
        ),
    ] = None,
) -> None:
    """Set how many messages the tenant may have posted and not yet had answered."""
    from agentq.errors import AgentqError
    from agentq.ops.tenants import set_pending_limit

    try:
        set_pending_limit(tenant, pending)
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    shown = "the setting's" if pending is None else pending or "none"
    typer.echo(f"tenant {tenant}: pending message limit {shown}")
