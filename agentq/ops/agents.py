"""Agents: who answers, with which provider and model, within which limits."""

from __future__ import annotations

import re
import uuid
from typing import Any

from agentq import events
from agentq.errors import Conflict, InvalidInput
from agentq.schemas import AgentOut
from agentq.states import AgentStatus
from agentq.store import agents, jobs, outbox
from agentq.store.session import reader, transaction
from agentq.turn import effects, finish
from agentq.turn.outcome import Effects

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
    tenant_id: uuid.UUID | None = None,
) -> AgentOut:
    """Create an agent. `model_config` holds model, endpoint, temperature, max_tokens and
    `api_key_env` (the NAME of an environment variable holding the key, never the key).
    `tenant_id` is the owning API tenant (None: made in-process)."""
    from agentq.providers import get_provider

    if not NAME_RE.match(name or ""):
        raise InvalidInput("name", f"{name!r} must be one word of letters, digits, _ . -")
    get_provider(provider)  # raises UnknownProvider naming it
    model_config = dict(model_config or {})
    for k in model_config:
        if k.lower() in SECRET_KEYS:
            raise InvalidInput(
                f"model_config.{k}", "secrets go in the environment; use api_key_env"
            )
    if max_concurrent_jobs < 1:
        raise InvalidInput("max_concurrent_jobs", "must be >= 1")
    if rate_limit_per_minute < 1:
        raise InvalidInput("rate_limit_per_minute", "must be >= 1")
    with transaction() as tx:
        if agents.exists_named(tx, name):
            raise Conflict(f"an agent named {name!r} already exists")
        out = agents.create(
            tx,
            name=name,
            role=role,
            backstory=backstory,
            goal=goal,
            system_prompt=system_prompt,
            provider=provider,
            model_config_=model_config,
            max_concurrent_jobs=max_concurrent_jobs,
            rate_limit_per_minute=rate_limit_per_minute,
            tenant_id=tenant_id,
        )
        created = events.AgentLifecycle(
            agent_id=out.id, status=out.status, name=name, event_type="agent.created"
        )
        rows = outbox.insert_events(tx, [created])
    effects.run(Effects(events=rows))
    return out


def get_agent(agent: uuid.UUID | str) -> AgentOut:
    """The agent by id or by name, or AgentNotFound."""
    with reader() as tx:
        return agents.find(tx, agent)


def list_agents() -> list[AgentOut]:
    with reader() as tx:
        return agents.all_agents(tx)


#: what each lifecycle command does: the statuses it applies to, the status it sets, its event
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "pause": (("active", "busy"), "paused", "agent.paused"),
    "resume": (("paused",), "active", "agent.resumed"),
    "stop": (("active", "busy", "paused"), "inactive", "agent.stopped"),
    "start": (("inactive",), "active", "agent.started"),
}


def _transition(agent: uuid.UUID | str, command: str) -> AgentOut:
    allowed, target, event_name = TRANSITIONS[command]
    after = Effects()
    with transaction() as tx:
        found = agents.find(tx, agent, lock=True)
        if found.status == target:
            return found
        if found.status not in allowed:
            raise Conflict(f"agent {found.name} is {found.status}; cannot {command} it")
        agents.set_status(tx, found.id, AgentStatus(target))
        changed = events.AgentLifecycle(
            agent_id=found.id, status=target, name=found.name, event_type=event_name
        )
        after.events = outbox.insert_events(tx, [changed])
        failed: list[Effects | None] = []
        if command == "stop":
            # No new jobs; its unfinished ones fail visibly now, and running calls stop.
            for job_id in jobs.unfinished_of_agent(tx, found.id):
                reason = f"agent {found.name} was stopped"
                failed.append(finish.fail(tx, job_id, reason, stop_call=True))
        out = found.model_copy(update={"status": target})
    effects.run(after)
    for done in failed:
        effects.run(done)
    if command in ("resume", "start"):
        effects.wake_agent(out.id)
    return out


def pause_agent(agent: uuid.UUID | str) -> AgentOut:
    """Pause: its jobs wait (not lost, not failed) and run in order on resume."""
    return _transition(agent, "pause")


def resume_agent(agent: uuid.UUID | str) -> AgentOut:
    return _transition(agent, "resume")


def stop_agent(agent: uuid.UUID | str) -> AgentOut:
    """Stop: no new jobs; its unfinished jobs fail visibly with the reason, and their
    running LLM calls are stopped."""
    return _transition(agent, "stop")


def start_agent(agent: uuid.UUID | str) -> AgentOut:
    return _transition(agent, "start")


def check_agent(agent: uuid.UUID | str) -> dict[str, Any]:
    """Call the agent's provider with a tiny request; report health (never raises)."""
    import time

    from agentq.errors import ProviderError
    from agentq.providers import ChatMessage, get_provider
    from agentq.turn.context import chat_request

    a = get_agent(agent)
    timeout = min(10.0, float(a.model_config_.get("timeout") or 10.0))
    request = chat_request(
        a.model_config_, [ChatMessage(role="user", content="ping")], max_tokens=5, timeout=timeout
    )
    started = time.monotonic()
    try:
        result = get_provider(a.provider).complete(request)
        ok, detail = True, f"model {result.model}"
    except ProviderError as exc:
        ok, detail = False, str(exc)
    return {
        "agent": a.name,
        "provider": a.provider,
        "endpoint": request.endpoint,
        "ok": ok,
        "latency_ms": int((time.monotonic() - started) * 1000),
        "detail": detail,
    }
