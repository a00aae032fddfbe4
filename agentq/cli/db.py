"""`agentq db ...`: the database schema."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


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
