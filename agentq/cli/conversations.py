"""`agentq conversations create|list|show|add-participant`: the ids `agentq post` takes.

Conversations of the tenant (`--tenant`, else $AGENTQ_TENANT, else "default"); another
tenant's ids are not found. Ids only: message bodies are the conversation's readers'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from agentq.cli.options import Tenant

if TYPE_CHECKING:
    from agentq.schemas import ConversationOut, ParticipantOut

conversations_app = typer.Typer(
    help="Conversations and their participants (the ids `agentq post` takes).",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ConversationId = Annotated[str, typer.Argument(help="Conversation id.")]
T = TypeVar("T")


def _call(fn: Callable[[], T]) -> T:
    """`fn()`, or the error on stderr and exit 2."""
    from agentq.errors import AgentqError

    try:
        return fn()
    except AgentqError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _conversation_line(c: ConversationOut) -> str:
    return f"{c.id}  {c.kind:<7}  messages {c.last_seq:<5}  {c.title or ''}"


def _participant_line(p: ParticipantOut) -> str:
    who = f"agent {p.agent_id}" if p.kind == "agent" else f"user {p.user_id}"
    return f"{p.id}  {p.kind:<5}  {p.display_name}  ({who})"


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _print(conv: ConversationOut, participants: list[ParticipantOut], as_json: bool) -> None:
    if as_json:
        _emit(
            {
                **conv.model_dump(mode="json"),
                "participants": [p.model_dump(mode="json") for p in participants],
            }
        )
        return
    typer.echo(_conversation_line(conv))
    for p in participants:
        typer.echo("  " + _participant_line(p))


@conversations_app.command("create")
def create(
    kind: Annotated[str, typer.Option(help="dm (one agent) or channel.")] = "dm",
    title: Annotated[str | None, typer.Option(help="A title.")] = None,
    agent: Annotated[
        list[str] | None, typer.Option(help="Add this agent (name or id); repeat for more.")
    ] = None,
    user: Annotated[
        list[str] | None, typer.Option(help="Add this user (your id for them); repeat for more.")
    ] = None,
    tenant: Tenant = None,
    as_json: AsJson = False,
) -> None:
    """Create a conversation of the tenant, with its participants."""
    from agentq.client import Client

    def work() -> tuple[ConversationOut, list[ParticipantOut]]:
        client = Client(tenant=tenant)
        conv = client.create_conversation(kind, title=title)
        added = [client.add_participant(conv.id, agent=a) for a in agent or []]
        added += [client.add_participant(conv.id, user_id=u) for u in user or []]
        return conv, added

    _print(*_call(work), as_json)


@conversations_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many first.")] = 0,
    tenant: Tenant = None,
    as_json: AsJson = False,
) -> None:
    """List the tenant's conversations."""
    from agentq.client import Client
    from agentq.ops import tenancy

    found = _call(
        lambda: tenancy.list_conversations(Client(tenant=tenant), limit=limit, offset=offset)
    )
    if as_json:
        _emit([c.model_dump(mode="json") for c in found])
        return
    for c in found:
        typer.echo(_conversation_line(c))
    if not found:
        typer.echo("no conversations")


@conversations_app.command("show")
def show(conversation_id: ConversationId, tenant: Tenant = None, as_json: AsJson = False) -> None:
    """A conversation of the tenant and its participants (their ids are `post`'s authors)."""
    from agentq.client import Client
    from agentq.ops import conversations, tenancy

    def work() -> tuple[ConversationOut, list[ParticipantOut]]:
        conv_id = tenancy.own_conversation(Client(tenant=tenant), conversation_id)
        return conversations.get_conversation(conv_id), conversations.list_participants(conv_id)

    _print(*_call(work), as_json)


@conversations_app.command("add-participant")
def add_participant(
    conversation_id: ConversationId,
    agent: Annotated[str | None, typer.Option(help="An agent of the tenant (name or id).")] = None,
    user: Annotated[str | None, typer.Option(help="A user (your id for them).")] = None,
    display_name: Annotated[str | None, typer.Option(help="The user's name shown.")] = None,
    tenant: Tenant = None,
    as_json: AsJson = False,
) -> None:
    """Add an agent or a user to a conversation; prints the participant's id."""
    from agentq.client import Client

    if (agent is None) == (user is None):
        raise typer.BadParameter("give --agent or --user (one of them)")
    p = _call(
        lambda: Client(tenant=tenant).add_participant(
            conversation_id, agent=agent, user_id=user, display_name=display_name
        )
    )
    typer.echo(json.dumps(p.model_dump(mode="json")) if as_json else _participant_line(p))
