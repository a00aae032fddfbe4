"""Agents: who answers, with which provider and model, within which limits."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentq import events
from agentq.db.models import Agent
from agentq.db.session import reader, transaction
from agentq.errors import AgentNotFound, Conflict, InvalidInput
from agentq.schemas import AgentOut

#: names are used in @mentions, so they are one word
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
#: keys of model_config that would put a secret in the database
SECRET_KEYS = ("api_key", "apikey", "key", "token", "secret", "password")


def create_agent(
    name: str,
    *,
    role: str = "",
    backstory: str = "",
    goal: str = "",
    system_prompt: str | None = None,
    provider: str = "openai",
    model_config: dict[str, Any] | None = None,
    max_concurrent_jobs: int = 1,
    rate_limit_per_minute: int = 10,
) -> AgentOut:
    """Create an agent. `model_config` holds model, endpoint, temperature, max_tokens and
    `api_key_env` (the NAME of an environment variable holding the key, never the key)."""
    from agentq.providers import get_provider

    if not NAME_RE.match(name or ""):
        raise InvalidInput("name", f"{name!r} must be one word of letters, digits, _ . -")
    get_provider(provider)  # raises UnknownProvider naming it
    model_config = dict(model_config or {})
    for k in model_config:
        if k.lower() in SECRET_KEYS:
            raise InvalidInput(f"model_config.{k}", "secrets go in the environment; use api_key_env")
    if max_concurrent_jobs < 1:
        raise InvalidInput("max_concurrent_jobs", "must be >= 1")
    if rate_limit_per_minute < 1:
        raise InvalidInput("rate_limit_per_minute", "must be >= 1")
    with transaction() as session:
        if session.scalar(select(Agent.id).where(Agent.name == name)):
            raise Conflict(f"an agent named {name!r} already exists")
        agent = Agent(
            name=name, role=role, backstory=backstory, goal=goal, system_prompt=system_prompt,
            provider=provider, model_config_=model_config,
            max_concurrent_jobs=max_concurrent_jobs, rate_limit_per_minute=rate_limit_per_minute,
        )
        session.add(agent)
        session.flush()
        row = events.record(
            session,
            events.AgentLifecycle(
                agent_id=agent.id, status=agent.status, name=name, event_type="agent.created"
            ),
        )
        out = AgentOut.model_validate(agent)
    events.publish([row])
    return out


def load_agent(session: Session, agent: uuid.UUID | str) -> Agent:
    """The agent by id or by name, or AgentNotFound."""
    row: Agent | None
    try:
        row = session.get(Agent, uuid.UUID(str(agent)))
    except ValueError:
        row = session.scalar(select(Agent).where(Agent.name == str(agent)))
    if row is None:
        raise AgentNotFound(agent)
    return row


def get_agent(agent: uuid.UUID | str) -> AgentOut:
    with reader() as session:
        return AgentOut.model_validate(load_agent(session, agent))


def list_agents() -> list[AgentOut]:
    with reader() as session:
        return [AgentOut.model_validate(a) for a in session.scalars(select(Agent).order_by(Agent.name))]
