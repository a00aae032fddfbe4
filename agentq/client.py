"""`agentq.Client`: the in-process producer API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from redis.client import PubSub

from agentq import turn
from agentq.config import get_settings
from agentq.errors import Timeout
from agentq.ops import agents, conversations, jobs, replies, tenancy, tenants
from agentq.runtime import bus
from agentq.runtime.redis import get_redis
from agentq.schemas import (
    AgentOut,
    ConversationOut,
    JobOut,
    MessageOut,
    ParticipantOut,
    PostedMessage,
)
from agentq.status import BATCH_TYPE

#: how often `ask` looks at the database when no event woke it
POLL_SECONDS = 0.25


#: events after which a waiting `ask` looks at the database again
WAKE_EVENTS = ("agent.responded", "job.failed")


def _subscribe(conversation_id: uuid.UUID) -> PubSub | None:
    try:
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(bus.channel(conversation_id))
        return pubsub
    except Exception:  # noqa: BLE001 - without Redis we still poll the database
        return None


def _wait_for_event(pubsub: PubSub | None, until: float) -> PubSub | None:
    """Sleep until a wake event arrives or `until` (monotonic); returns the pubsub, or
    None once it failed."""
    while (left := until - time.monotonic()) > 0:
        if pubsub is None:
            time.sleep(left)
            break
        try:
            msg = pubsub.get_message(timeout=left)
        except Exception:  # noqa: BLE001 - fall back to polling
            pubsub.close()
            pubsub = None
            continue
        if msg and json.loads(msg["data"]).get("type") in WAKE_EVENTS:
            break
    return pubsub


def _follow(pubsub: PubSub, timeout: float | None) -> Iterator[dict[str, Any]]:
    try:
        quiet_since = time.monotonic()
        while True:
            wait = 1.0 if timeout is None else timeout - (time.monotonic() - quiet_since)
            if wait <= 0:
                return
            # None also after a subscribe confirmation, not only after `wait`
            msg = pubsub.get_message(timeout=wait)
            if msg is None:
                continue
            quiet_since = time.monotonic()
            data = json.loads(msg["data"])
            if data.get("type") == BATCH_TYPE:
                yield from data.get("items", [])
            else:
                yield data
    finally:
        pubsub.close()


class Client:
    """Producer API over the configured database and Redis (see `agentq.config`), acting
    for one tenant: `tenant` by name, else $AGENTQ_TENANT, else the tenant named
    "default" (created the first time it is used). The agents and conversations it
    creates are that tenant's, so that an API key of the tenant sees them; agents are
    found (by id or by name, in any case) among that tenant's only, and so are
    conversations, messages and jobs given by id: another tenant's id raises the same
    NotFound as an id that names nothing (`agentq.ops.tenancy` decides, as for the API).

    Every method is synchronous and safe to call from several threads.
    """

    def __init__(self, tenant: str | None = None) -> None:
        self.tenant = tenants.tenant_name(tenant)

    @property
    def tenant_id(self) -> uuid.UUID:
        """The id of the client's tenant (created if new)."""
        return tenants.tenant_id(self.tenant)

    def _agent_id(self, agent: uuid.UUID | str) -> uuid.UUID:
        return agents.get_agent(agent, tenant_id=self.tenant_id).id

    def create_agent(self, name: str, **fields: Any) -> AgentOut:
        """Create an agent of the client's tenant on one of the operator's model profiles;
        see `agentq.ops.agents.create_agent` for the fields. `model_config` may hold only
        `profile` (default "default"), `max_tokens`, `temperature` and `timeout`, within
        the profile's caps: endpoints, keys and models are the profile's. Names are
        unique in the tenant in any case (Conflict)."""
        return agents.create_agent(name, tenant_id=self.tenant_id, **fields)

    def get_agent(self, agent: uuid.UUID | str) -> AgentOut:
        return agents.get_agent(agent, tenant_id=self.tenant_id)

    def list_agents(self) -> list[AgentOut]:
        """The tenant's agents, by name."""
        return agents.list_agents(tenant_id=self.tenant_id)

    def update_agent(self, agent: uuid.UUID | str, **changes: Any) -> AgentOut:
        """Change role, backstory, goal, system_prompt, model_config (merged over the
        stored one; within the profile's caps) and the limits; see
        `agentq.ops.agents.update_agent`."""
        return agents.update_agent(agent, tenant_id=self.tenant_id, **changes)

    def delete_agent(self, agent: uuid.UUID | str) -> None:
        """Delete (soft): stopped first (its unfinished jobs fail visibly), then gone from
        lookups and lists, never chosen to answer again; its name is free again."""
        agents.delete_agent(agent, tenant_id=self.tenant_id)

    def pause_agent(self, agent: uuid.UUID | str) -> AgentOut:
        """Its jobs wait (not lost, not failed) until `resume_agent`, then run in order."""
        return agents.pause_agent(self._agent_id(agent))

    def resume_agent(self, agent: uuid.UUID | str) -> AgentOut:
        return agents.resume_agent(self._agent_id(agent))

    def stop_agent(self, agent: uuid.UUID | str) -> AgentOut:
        """No new jobs; its waiting jobs fail visibly with the reason."""
        return agents.stop_agent(self._agent_id(agent))

    def start_agent(self, agent: uuid.UUID | str) -> AgentOut:
        return agents.start_agent(self._agent_id(agent))

    def check_agent(self, agent: uuid.UUID | str) -> dict[str, Any]:
        """Call the agent's provider with a tiny request and report its health."""
        return agents.check_agent(self._agent_id(agent))

    def create_conversation(
        self, kind: str = "dm", *, title: str | None = None, settings: dict[str, Any] | None = None
    ) -> ConversationOut:
        """A `dm` (one agent) or a `channel` of the client's tenant; `settings` may set
        debounce_seconds and max_wait_seconds for this conversation."""
        return conversations.create_conversation(
            kind, title=title, settings=settings, tenant_id=self.tenant_id
        )

    def add_participant(
        self,
        conversation_id: uuid.UUID | str,
        *,
        agent: uuid.UUID | str | None = None,
        user_id: str | None = None,
        display_name: str | None = None,
    ) -> ParticipantOut:
        """Add an agent of the client's tenant (by id or name) or a user to a conversation."""
        return conversations.add_participant(
            tenancy.own_conversation(self, conversation_id),
            agent=None if agent is None else self._agent_id(agent),
            user_id=user_id,
            display_name=display_name,
        )

    def start_session(
        self, agent: uuid.UUID | str, user_id: str
    ) -> tuple[ConversationOut, ParticipantOut]:
        """A DM of `user_id` with `agent`; returns the conversation and the user's participant."""
        agent_id = self._agent_id(agent)
        conv = self.create_conversation("dm", title=f"session {user_id}")
        conversations.add_participant(conv.id, agent=agent_id)
        return conv, conversations.add_participant(conv.id, user_id=user_id)

    def post_message(
        self,
        conversation_id: uuid.UUID | str,
        author_id: uuid.UUID | str,
        content: str,
        idempotency_key: str | None = None,
    ) -> PostedMessage:
        """Accept a message (stored before this returns); agents answer asynchronously."""
        conv_id = tenancy.own_conversation(self, conversation_id)
        return turn.post_message(conv_id, author_id, content, idempotency_key)

    def list_messages(
        self, conversation_id: uuid.UUID | str, *, after_seq: int = 0, limit: int = 100
    ) -> list[MessageOut]:
        conv_id = tenancy.own_conversation(self, conversation_id)
        return conversations.list_messages(conv_id, after_seq=after_seq, limit=limit)

    def ask(
        self,
        conversation_id: uuid.UUID | str,
        author_id: uuid.UUID | str,
        content: str,
        timeout: float = 30,
    ) -> MessageOut:
        """Post a message and block until an agent's reply to it is written.

        Raises Timeout after `timeout` seconds (the message stays accepted and will still
        be answered), or ProviderError if the job answering it failed.
        """
        posted = self.post_message(conversation_id, author_id, content)
        return self.wait_for_reply(posted.id, timeout=timeout)

    def wait_for_reply(self, message_id: uuid.UUID | str, timeout: float = 30) -> MessageOut:
        """Block until the job covering `message_id` replied (or failed).

        Wakes on the conversation's `agent.responded` / `job.failed` events, and looks at
        the database every POLL_SECONDS in any case (events are best effort).
        """
        deadline = time.monotonic() + timeout
        mid, conv_id = tenancy.own_message(self, message_id)
        pubsub = _subscribe(conv_id)
        try:
            while True:
                reply = replies.reply_to(mid)
                if reply is not None:
                    return reply
                if time.monotonic() >= deadline:
                    raise Timeout(f"no reply to message {mid} within {timeout}s")
                pubsub = _wait_for_event(pubsub, min(deadline, time.monotonic() + POLL_SECONDS))
        finally:
            if pubsub is not None:
                pubsub.close()

    def get_job(self, job_id: uuid.UUID | str) -> JobOut:
        return jobs.get_job(tenancy.own_job(self, job_id))

    def retry_job(self, job_id: uuid.UUID | str) -> JobOut:
        """Run a failed or cancelled job again, with fresh attempts."""
        return jobs.retry_job(tenancy.own_job(self, job_id))

    def events(self, since: str | int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The stored event feed after the cursor `since` (0: from the start), in commit
        order: continue with the last record's `cursor` and no event is skipped or
        repeated, whatever commits meanwhile. A malformed cursor: InvalidInput.

        The operator's feed: every tenant's events, and the deployment's own (a circuit
        opening); the HTTP API's `/v1/events` is a tenant's."""
        return bus.read_feed(after=since, limit=limit, field="since")

    def stream(
        self, conversation_id: uuid.UUID | str, *, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Live records of a conversation as they happen: `agent.token` (streamed text of
        a reply being written: `job_id`, `seq` from 1, `offset` of its first character,
        `text`), stored events (`message.created`, `agent.responded`, ...) and live status.

        Subscribed when this returns. Not a replay: a subscriber joining mid-reply sees
        its first `agent.token` with an `offset` above 0, and the whole reply comes with
        `agent.responded`. The iterator ends after `timeout` seconds without a record
        (None: never); close it to stop earlier."""
        conv_id = tenancy.own_conversation(self, conversation_id)
        pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(bus.channel(conv_id))
        return _follow(pubsub, timeout)

    @property
    def settings(self) -> Any:
        return get_settings()
