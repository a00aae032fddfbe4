"""Agents: who answers, with which provider and model, within which limits."""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any

from agentq import events, names, profiles
from agentq.clock import utcnow
from agentq.errors import Busy, Conflict, InvalidInput, UnknownProvider
from agentq.ops import tenants
from agentq.runtime import redis as aq_redis
from agentq.schemas import AgentOut
from agentq.states import AgentStatus
from agentq.store import agents, jobs, outbox
from agentq.store.session import reader, transaction
from agentq.turn import effects, finish
from agentq.turn.outcome import Effects

#: what a caller may set in model_config, each bounded by the agent's model profile
AGENT_KEYS = profiles.AGENT_KEYS


def _number(cfg: dict[str, Any], key: str, *, integer: bool = False) -> float | None:
    value = cfg.get(key)
    if value is None:
        return None
    field = f"model_config.{key}"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise InvalidInput(field, f"must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value):
        raise InvalidInput(field, "must be a finite number")
    return value


def _model_config(cfg: dict[str, Any]) -> tuple[profiles.ModelProfile, dict[str, Any]]:
    """The profile a caller's model_config names, and the model_config to store: only
    the profile and bounded generation parameters. Endpoints, keys, key variables, models
    and providers are the operator's (model profiles), never a caller's."""
    for key in cfg:
        if key not in AGENT_KEYS:
            raise InvalidInput(
                f"model_config.{key}",
                "is not accepted; model_config takes only "
                f"{', '.join(AGENT_KEYS)} (the operator's model profile sets the rest)",
            )
    name = cfg.get("profile", profiles.DEFAULT)
    if not isinstance(name, str):
        raise InvalidInput("model_config.profile", "must be a profile name")
    profile = profiles.get(name)
    stored: dict[str, Any] = {"profile": profile.name}
    tokens = _number(cfg, "max_tokens", integer=True)
    if tokens is not None:
        if not 1 <= tokens <= profile.max_tokens:
            raise InvalidInput(
                "model_config.max_tokens",
                f"must be between 1 and {profile.max_tokens} (profile {profile.name})",
            )
        stored["max_tokens"] = tokens
    temperature = _number(cfg, "temperature")
    if temperature is not None:
        if not 0 <= temperature <= profiles.MAX_TEMPERATURE:
            raise InvalidInput("model_config.temperature", "must be between 0 and 2")
        stored["temperature"] = temperature
    timeout = _number(cfg, "timeout")
    if timeout is not None:
        if not 0 < timeout <= profile.timeout:
            raise InvalidInput(
                "model_config.timeout",
                f"must be > 0 and at most {profile.timeout:g} seconds (profile {profile.name})",
            )
        stored["timeout"] = timeout
    return profile, stored


def _provider(asked: str | None, profile: profiles.ModelProfile) -> str:
    """The agent's provider: its profile's. Nothing is imported on a caller's behalf."""
    if asked is None:
        return profile.provider
    if ":" in asked or "." in asked:
        raise InvalidInput(
            "provider",
            "import paths are not accepted; the operator's model profiles name providers",
        )
    if asked == profile.provider:
        return profile.provider
    from agentq.providers import provider_names

    if asked not in provider_names():
        raise UnknownProvider(asked, provider_names())
    raise InvalidInput(
        "provider",
        f"{asked!r} is not the provider of model profile {profile.name!r} "
        f"({profile.provider}); choose a profile instead",
    )


def _limit(field: str, value: int, cap: int, profile: profiles.ModelProfile) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cap:
        raise InvalidInput(field, f"must be between 1 and {cap} (profile {profile.name})")


def create_agent(
    name: str,
    *,
    role: str = "",
    backstory: str = "",
    goal: str = "",
    system_prompt: str | None = None,
    provider: str | None = None,
    model_config: dict[str, Any] | None = None,
    max_concurrent_jobs: int = 1,
    rate_limit_per_minute: int = 10,
    tenant_id: uuid.UUID | None = None,
) -> AgentOut:
    """Create an agent on a model profile of the operator's.

    `model_config` may hold only `profile` (a profile's name; default "default"),
    `max_tokens`, `temperature` (0..2) and `timeout` (seconds), each within the profile's
    caps; anything else (an endpoint, a key, a key variable, a model, a provider) is
    refused with InvalidInput naming it. `provider`, if given, must be the profile's
    provider name. `max_concurrent_jobs` and `rate_limit_per_minute` are bounded by the
    profile's caps. `tenant_id` is the owning tenant (None: the in-process callers'
    tenant, see `agentq.ops.tenants`). Names are unique in a tenant in any case
    (Conflict), and say nothing of other tenants' names."""
    name = names.check(name)  # @mentions: one word, any script (agentq.names)
    if model_config is not None and not isinstance(model_config, dict):
        raise InvalidInput("model_config", "must be an object")
    profile, model_config = _model_config(model_config or {})
    provider = _provider(provider, profile)
    _limit("max_concurrent_jobs", max_concurrent_jobs, profile.max_concurrent_jobs, profile)
    _limit("rate_limit_per_minute", rate_limit_per_minute, profile.rate_limit_per_minute, profile)
    if tenant_id is None:
        tenant_id = tenants.tenant_id()
    with transaction() as tx:
        if agents.exists_named(tx, name, tenant_id):
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


def get_agent(agent: uuid.UUID | str, *, tenant_id: uuid.UUID | None = None) -> AgentOut:
    """The agent by id or by name (any case), or AgentNotFound; with `tenant_id`, only
    that tenant's. Deleted agents are not found."""
    with reader() as tx:
        return agents.find(tx, agent, tenant_id=tenant_id)


def list_agents(*, tenant_id: uuid.UUID | None = None) -> list[AgentOut]:
    """The tenant's agents (None: every tenant's), by name; deleted ones left out."""
    with reader() as tx:
        return agents.all_agents(tx, tenant_id)


#: what `update_agent` may change
UPDATABLE = (
    "role",
    "backstory",
    "goal",
    "system_prompt",
    "model_config",
    "max_concurrent_jobs",
    "rate_limit_per_minute",
)
#: the longest text each prompt field may hold (as in the API's bodies)
_TEXT_LIMITS = {"role": 10_000, "backstory": 10_000, "goal": 10_000, "system_prompt": 50_000}


def _text(field: str, value: Any) -> None:
    if value is None and field == "system_prompt":
        return
    if not isinstance(value, str) or len(value) > _TEXT_LIMITS[field]:
        raise InvalidInput(field, f"must be a string of at most {_TEXT_LIMITS[field]} characters")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL characters")


def _changes(found: AgentOut, changes: dict[str, Any]) -> dict[str, Any]:
    """The columns to set for `changes`, checked as `create_agent` checks them: the
    model_config given is merged over the stored one (a key set to None is removed), and
    the limits are checked against the (new) profile's caps."""
    columns: dict[str, Any] = {}
    for field, value in changes.items():
        if field not in UPDATABLE:
            raise InvalidInput(field, f"cannot be changed; updatable: {', '.join(UPDATABLE)}")
        if field in _TEXT_LIMITS:
            _text(field, value)
            columns[field] = value
    if {"model_config", "max_concurrent_jobs", "rate_limit_per_minute"} & changes.keys():
        given = changes.get("model_config") or {}
        if not isinstance(given, dict):
            raise InvalidInput("model_config", "must be an object")
        kept = {k: v for k, v in found.model_config_.items() if k in AGENT_KEYS}
        merged = {k: v for k, v in {**kept, **given}.items() if v is not None}
        profile, cfg = _model_config(merged)
        concurrent = changes.get("max_concurrent_jobs", found.max_concurrent_jobs)
        rate = changes.get("rate_limit_per_minute", found.rate_limit_per_minute)
        _limit("max_concurrent_jobs", concurrent, profile.max_concurrent_jobs, profile)
        _limit("rate_limit_per_minute", rate, profile.rate_limit_per_minute, profile)
        columns.update(
            model_config_=cfg,
            provider=profile.provider,
            max_concurrent_jobs=concurrent,
            rate_limit_per_minute=rate,
        )
    return columns


def update_agent(
    agent: uuid.UUID | str, *, tenant_id: uuid.UUID | None = None, **changes: Any
) -> AgentOut:
    """Change an agent's prompt fields (role, backstory, goal, system_prompt), its model
    (`model_config`: profile, max_tokens, temperature, timeout, within the profile's caps,
    as `create_agent` checks them) and its limits; what is not given keeps its value.
    With `tenant_id`, only that tenant's agent. Publishes `agent.updated`."""
    wake = False
    with transaction() as tx:
        found = agents.find(tx, agent, lock=True, tenant_id=tenant_id)
        columns = _changes(found, changes)
        if not columns:
            return found
        if (
            found.status == AgentStatus.BUSY
            and columns.get("max_concurrent_jobs", 0) > found.max_concurrent_jobs
        ):
            # more room: it may claim again (a claim at its limit marks it busy again)
            columns["status"] = AgentStatus.ACTIVE
            wake = True
        out = agents.update_agent(tx, found.id, **columns)
        updated = events.AgentLifecycle(
            agent_id=out.id, status=out.status, name=out.name, event_type="agent.updated"
        )
        rows = outbox.insert_events(tx, [updated])
    effects.run(Effects(events=rows))
    if wake:
        effects.wake_agent(out.id)
    return out


def delete_agent(agent: uuid.UUID | str, *, tenant_id: uuid.UUID | None = None) -> None:
    """Delete an agent (soft): stopped first as `stop_agent` does (its unfinished jobs
    fail visibly with the reason, its running calls stop), then left out of lookups and
    lists and never chosen to answer again; its name is free again in its tenant. With
    `tenant_id`, only that tenant's agent. Publishes `agent.deleted`."""
    found = get_agent(agent, tenant_id=tenant_id)
    for _ in range(5):
        if found.status != AgentStatus.INACTIVE:
            found = _transition(found.id, "stop")
        with transaction() as tx:
            found = agents.find(tx, found.id, lock=True)
            if found.status != AgentStatus.INACTIVE:
                continue  # started again meanwhile: stop it again
            agents.mark_deleted(tx, found.id, utcnow())
            deleted = events.AgentLifecycle(
                agent_id=found.id, status=found.status, name=found.name, event_type="agent.deleted"
            )
            rows = outbox.insert_events(tx, [deleted])
        effects.run(Effects(events=rows))
        return
    raise Conflict(f"agent {found.name} keeps being started; cannot delete it now")


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
        out = found.model_copy(update={"status": target})
    effects.run(after)
    if command == "stop":
        # No new jobs start now; its unfinished ones fail visibly, each in a transaction
        # of its own (one holding the agent could not lock their conversations: the lock
        # order), and running calls stop. A claim racing the stop is among them.
        with reader() as tx:
            unfinished = jobs.unfinished_of_agent(tx, found.id)
        reason = f"agent {found.name} was stopped"
        for job_id in unfinished:
            with transaction() as tx:
                done = finish.fail(tx, job_id, reason, stop_call=True)
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


#: the longest one health check's provider request may take
CHECK_TIMEOUT_SECONDS = 10.0
#: how long one check's report answers every caller of `shared_check`
CHECK_SHARED_SECONDS = 30


def check_agent(agent: uuid.UUID | str) -> dict[str, Any]:
    """Call the agent's provider with a tiny request and report its health (never raises
    for the provider's sake): ok, latency, the model profile, and on failure the error's
    class and HTTP status only -- never the provider's answer or the endpoint's URL."""
    from agentq.errors import ProviderError, UnknownProfile
    from agentq.providers import ChatMessage, get_provider
    from agentq.turn.context import chat_request

    a = get_agent(agent)
    report: dict[str, Any] = {
        "agent": a.name,
        "profile": a.model_config_.get("profile", profiles.DEFAULT),
        "provider": None,
        "ok": False,
        "latency_ms": 0,
        "error": None,
        "status_code": None,
    }
    try:
        profile = profiles.of_agent(a.model_config_)
    except UnknownProfile:
        report["error"] = "UnknownProfile"
        return report
    report["provider"] = profile.provider
    request = chat_request(
        a.model_config_,
        [ChatMessage(role="user", content="ping")],
        max_tokens=5,
        timeout=min(CHECK_TIMEOUT_SECONDS, profile.timeout),
    )
    started = time.monotonic()
    try:
        get_provider(profile.provider).complete(request)
        report["ok"] = True
    except ProviderError as exc:
        report["error"] = type(exc).__name__
        report["status_code"] = exc.status_code
    except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
        report["error"] = type(exc).__name__
    report["latency_ms"] = int((time.monotonic() - started) * 1000)
    return report


def shared_check(agent_id: uuid.UUID) -> dict[str, Any]:
    """`check_agent` for callers who may be many (the API's keys, read-only ones too): at
    most one provider call per agent every CHECK_SHARED_SECONDS, whoever asks, since each
    spends the operator's quota and the agent's provider rate. A report younger than that
    is answered again with its age (`age_seconds`); while a check runs, the others get
    Busy (429) until its report is shared."""
    redis = aq_redis.get_redis()
    report_key = aq_redis.key("health", agent_id)
    running_key = aq_redis.key("health", agent_id, "running")
    kept = redis.get(report_key)
    if kept is not None:
        report: dict[str, Any] = json.loads(kept)
        report["age_seconds"] = round(max(0.0, time.time() - report.pop("checked_at")), 1)
        return report
    wait = math.ceil(CHECK_TIMEOUT_SECONDS)
    if not redis.set(running_key, 1, nx=True, ex=wait + 5):
        raise Busy(f"a health check of agent {agent_id} is running; retry in {wait} s", wait)
    try:
        report = check_agent(agent_id)
        kept_report = json.dumps({**report, "checked_at": time.time()})
        redis.set(report_key, kept_report, ex=CHECK_SHARED_SECONDS)
    finally:
        redis.delete(running_key)
    return {**report, "age_seconds": 0.0}
