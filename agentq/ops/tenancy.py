"""What a tenant may see: its own agents and conversations (and their jobs, messages and
events). The one decision for every face: the HTTP API (a key's `Principal`), and
`agentq.Client` and the CLI, which act for the tenant they name.

Another tenant's ids answer 404 (NotFound), exactly like ids that do not exist, so that
a caller cannot even learn which ids exist elsewhere.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from agentq import ids
from agentq.errors import AgentNotFound, ConversationNotFound, JobNotFound, NotFound
from agentq.events import feed_record
from agentq.schemas import ConversationOut, JobOut
from agentq.store import feed, reads, tenancy


class Owner(Protocol):
    """Whoever acts for a tenant: an API key's `Principal`, an `agentq.Client`."""

    @property
    def tenant_id(self) -> uuid.UUID: ...


def own_conversation(who: Owner, conversation_id: uuid.UUID | str) -> uuid.UUID:
    """The conversation's id; ConversationNotFound unless it is the caller's tenant's."""
    conv_id = ids.conversation(conversation_id)
    tenant = tenancy.conversation_tenant(conv_id)
    if tenant is None or tenant != who.tenant_id:
        raise ConversationNotFound(conversation_id)
    return conv_id


def own_agent(who: Owner, agent_id: uuid.UUID | str) -> uuid.UUID:
    """The agent's id; AgentNotFound unless it is the caller's tenant's."""
    found = ids.agent(agent_id)
    tenant = tenancy.agent_tenant(found)
    if tenant is None or tenant != who.tenant_id:
        raise AgentNotFound(agent_id)
    return found


def own_job(who: Owner, job_id: uuid.UUID | str) -> uuid.UUID:
    """The job's id; JobNotFound unless its conversation is the caller's tenant's."""
    found = ids.job(job_id)
    tenant = tenancy.job_tenant(found)
    if tenant is None or tenant != who.tenant_id:
        raise JobNotFound(job_id)
    return found


def own_message(who: Owner, message_id: uuid.UUID | str) -> tuple[uuid.UUID, uuid.UUID]:
    """(message id, its conversation's id); NotFound("message") unless the message is in
    a conversation of the caller's tenant."""
    found = ids.maybe(message_id)
    conv_id = None if found is None else reads.message_conversation(found)
    if found is None or conv_id is None or tenancy.conversation_tenant(conv_id) != who.tenant_id:
        raise NotFound("message", message_id)
    return found, conv_id


def agent_ids(who: Owner) -> set[str]:
    """The ids (as strings) of the caller's tenant's agents."""
    return {str(a) for a in tenancy.tenant_agent_ids(who.tenant_id)}


def list_conversations(who: Owner, *, limit: int, offset: int) -> list[ConversationOut]:
    """One page of the tenant's conversations, newest first."""
    return reads.tenant_conversations(who.tenant_id, limit=limit, offset=offset)


def list_jobs(
    who: Owner,
    *,
    status: str | None = None,
    conversation_id: uuid.UUID | None = None,
    limit: int,
    offset: int,
) -> list[JobOut]:
    """One page of the jobs of the tenant's conversations, newest first, optionally of one
    status and one conversation."""
    return reads.tenant_jobs(
        who.tenant_id, status=status, conversation_id=conversation_id, limit=limit, offset=offset
    )


def read_feed(who: Owner, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
    """Feed records of the tenant's conversations and agents after the cursor `after`,
    in commit order, and the cursor to continue after: past other tenants' events too,
    so a page may hold fewer than `limit` records without being the end. A malformed
    cursor is an InvalidInput naming `after`."""
    rows = feed.tenant_feed(who.tenant_id, after=after, limit=limit)
    mine = agent_ids(who) if any(r.conversation_id is None for r in rows) else set()
    records = [
        {**feed_record(r), "cursor": r.cursor}
        for r in rows
        if r.conversation_id is not None or str(r.payload.get("agent_id")) in mine
    ]
    return records, rows[-1].cursor if rows else feed.check_cursor(after, "after")
