"""`agentq db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option(help="Database URL (default: AGENTQ_DATABASE_URL).")]


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    url: Url = None,
) -> None:
    """Create or migrate the database schema (safe to run again)."""
    from agentq.store.migrate import upgrade

    upgrade(url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current(url: Url = None) -> None:
    """The revision the database is at (nothing printed: no schema yet)."""
    from agentq.store.migrate import current

    current(url)


@db_app.command("history")
def db_history(url: Url = None) -> None:
    """Every revision, newest first; the database's is marked (current)."""
    from agentq.store.migrate import history

    history(url)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[
        str,
        typer.Argument(help="Target: a revision id, or base (no schema). Default: one back."),
    ] = "-1",
    url: Url = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the schema back to `revision`: tables and columns added since are dropped,
    with their data."""
    from agentq.store.migrate import downgrade

    if not yes:
        typer.confirm(
            f"Downgrade the database to {'the revision before' if revision == '-1' else revision}? "
            "Data in what is dropped is lost",
            abort=True,
            err=True,  # stdout keeps only the result
        )
    downgrade(url, revision)
    typer.echo("database one revision back" if revision == "-1" else f"database at {revision}")
