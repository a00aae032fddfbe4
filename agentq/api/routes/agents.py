"""`/v1/agents`: a tenant's agents."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from agentq.api.auth import Acting, Caller
from agentq.api.models import AgentIn, AgentPatch
from agentq.ops import agents
from agentq.ops.tenancy import own_agent
from agentq.schemas import AgentOut

router = APIRouter(prefix="/v1/agents", tags=["agents"])

#: routes that read the operator's model profiles answer 503 while those are invalid
PROFILES: dict[int | str, dict[str, Any]] = {
    503: {"description": "The operator's model profiles are invalid (not the caller's fault)."}
}


@router.post("", status_code=201, response_model=AgentOut, responses=PROFILES)
def create_agent(body: AgentIn, who: Acting) -> AgentOut:
    """Create an agent owned by the key's tenant, on one of the operator's model profiles
    (`model_config.profile`, default "default"). Names are @mentions: one word, letters
    of any script (422 saying what a name may be), unique in the tenant in any case
    (409); other tenants' names do not matter."""
    fields = body.model_dump(exclude={"name", "model_config_"}, by_alias=False)
    model_config = body.model_config_.model_dump(exclude_none=True)
    return agents.create_agent(
        body.name, tenant_id=who.tenant_id, model_config=model_config, **fields
    )


@router.get("", response_model=list[AgentOut])
def list_agents(who: Caller) -> list[AgentOut]:
    """The tenant's agents, by name (deleted ones left out)."""
    return agents.list_agents(tenant_id=who.tenant_id)


@router.get("/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: uuid.UUID, who: Caller) -> AgentOut:
    return agents.get_agent(agent_id, tenant_id=who.tenant_id)


@router.patch("/{agent_id}", response_model=AgentOut, responses=PROFILES)
def update_agent(agent_id: uuid.UUID, body: AgentPatch, who: Acting) -> AgentOut:
    """Change prompt fields, the model (profile and generation parameters, within the
    profile's caps) and limits; fields not given keep their value. Publishes
    `agent.updated`."""
    changes = body.model_dump(exclude_unset=True, by_alias=False)
    if "model_config_" in changes:
        changes["model_config"] = changes.pop("model_config_") or {}
    return agents.update_agent(agent_id, tenant_id=who.tenant_id, **changes)


@router.delete("/{agent_id}", status_code=204, response_class=Response)
def delete_agent(agent_id: uuid.UUID, who: Acting) -> Response:
    """Delete (soft): stopped first (its unfinished jobs fail visibly), then gone from
    lists and lookups, never chosen to answer again; its name is free again. Publishes
    `agent.deleted`."""
    agents.delete_agent(agent_id, tenant_id=who.tenant_id)
    return Response(status_code=204)


@router.post("/{agent_id}/pause", response_model=AgentOut)
def pause_agent(agent_id: uuid.UUID, who: Acting) -> AgentOut:
    """Pause: its jobs wait (not lost, not failed) and run in order on resume."""
    own_agent(who, agent_id)
    return agents.pause_agent(agent_id)


@router.post("/{agent_id}/resume", response_model=AgentOut)
def resume_agent(agent_id: uuid.UUID, who: Acting) -> AgentOut:
    own_agent(who, agent_id)
    return agents.resume_agent(agent_id)


@router.post("/{agent_id}/stop", response_model=AgentOut)
def stop_agent(agent_id: uuid.UUID, who: Acting) -> AgentOut:
    """Stop: no new jobs; its waiting jobs fail visibly with the reason."""
    own_agent(who, agent_id)
    return agents.stop_agent(agent_id)


@router.post("/{agent_id}/start", response_model=AgentOut)
def start_agent(agent_id: uuid.UUID, who: Acting) -> AgentOut:
    """Start a stopped agent."""
    own_agent(who, agent_id)
    return agents.start_agent(agent_id)


@router.get("/{agent_id}/health", responses=PROFILES)
def check_agent(agent_id: uuid.UUID, who: Caller) -> dict[str, object]:
    """Call the agent's provider with a tiny request and report its health: ok,
    latency_ms, the profile, and on failure the error class and HTTP status only. One
    call per agent every 30 s serves every caller: a newer report is answered again
    (`age_seconds`), and while a check runs the others get 429 with Retry-After."""
    own_agent(who, agent_id)
    return agents.shared_check(agent_id)
