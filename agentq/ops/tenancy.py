"""What a tenant may see: its own agents and conversations (and their jobs and events).

Another tenant's ids answer 404, exactly like ids that do not exist, so that a key
cannot even learn which ids exist elsewhere.
"""

from __future__ import annotations

import uuid
from typing import Any

from agentq.errors import AgentNotFound, ConversationNotFound, JobNotFound
from agentq.events import feed_record
from agentq.ops.keys import Principal
from agentq.schemas import ConversationOut, JobOut
from agentq.store import feed, reads, tenancy


def own_conversation(who: Principal, conversation_id: uuid.UUID) -> None:
    """Raise ConversationNotFound unless the conversation is the caller's tenant's."""
    tenant = tenancy.conversation_tenant(conversation_id)
    if tenant is None or tenant != who.tenant_id:
        raise ConversationNotFound(conversation_id)


def own_agent(who: Principal, agent_id: uuid.UUID) -> None:
    """Raise AgentNotFound unless the agent is the caller's tenant's."""
    tenant = tenancy.agent_tenant(agent_id)
    if tenant is None or tenant != who.tenant_id:
        raise AgentNotFound(agent_id)


def own_job(who: Principal, job_id: uuid.UUID) -> None:
    """Raise JobNotFound unless the job's conversation is the caller's tenant's."""
    tenant = tenancy.job_tenant(job_id)
    if tenant is None or tenant != who.tenant_id:
        raise JobNotFound(job_id)


def agent_ids(who: Principal) -> set[str]:
    """The ids (as strings) of the caller's tenant's agents."""
    return {str(a) for a in tenancy.tenant_agent_ids(who.tenant_id)}


def list_conversations(who: Principal, *, limit: int, offset: int) -> list[ConversationOut]:
    """One page of the tenant's conversations, newest first."""
    return reads.tenant_conversations(who.tenant_id, limit=limit, offset=offset)


def list_jobs(
    who: Principal,
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


def read_feed(who: Principal, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
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
