"""`agentq keys ...`: API keys of the HTTP API."""

from __future__ import annotations

import json
from typing import Annotated

import typer

keys_app = typer.Typer(help="API keys of the HTTP API.", no_args_is_help=True)


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant name (created if new; default: the key's name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a key and print it: it is stored hashed and cannot be shown again."""
    from agentq.ops.keys import create_key

    secret, info = create_key(name, tenant)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key": secret,
                    "id": str(info.id),
                    "name": info.name,
                    "tenant": info.tenant,
                    "tenant_id": str(info.tenant_id),
                }
            )
        )
        return
    typer.echo(secret)
    typer.echo(
        f"key {info.id} ({info.name}) of tenant {info.tenant}: store it now, it is not shown again",
        err=True,
    )


@keys_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List keys (their prefixes, never the keys)."""
    from agentq.ops.keys import list_keys

    for k in list_keys():
        row = {
            "id": str(k.id),
            "name": k.name,
            "prefix": k.prefix,
            "tenant": k.tenant,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
        }
        used = f"used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        typer.echo(
            json.dumps(row)
            if as_json
            else f"{k.id}  {k.prefix}…  {k.name}  tenant={k.tenant}  {used}"
            + ("  REVOKED" if k.revoked_at else "")
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")]) -> None:
    """Revoke a key; it stops working at once."""
    from agentq.ops.keys import revoke_key

    revoke_key(key_id)
    typer.echo(f"revoked {key_id}")
