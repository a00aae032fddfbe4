"""The data model: SQLAlchemy 2.0 typed tables, the same on PostgreSQL and SQLite.

The database is the truth. Redis only caches intent (timers, locks, limits) that the
reconciler can rebuild from these rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agentq import names
from agentq.clock import utcnow  # noqa: F401 - re-exported
from agentq.states import FINISHED_JOB_STATES, OPEN_JOB_STATES  # noqa: F401 - re-exported

# Stable constraint names, so that Alembic migrations read the same on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def _name_key(context: Any) -> str:
    return names.key(context.get_current_parameters()["name"])


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; agentq stores UTC-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite autoincrements only an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # dm | channel
    title: Mapped[str | None] = mapped_column(String(200))
    #: the API tenant that owns it; None for conversations made in-process (no API key)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    #: per-conversation overrides: debounce_seconds, max_wait_seconds, double_texting, ...
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: seq of the newest message; the next message takes last_seq + 1
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: every message with seq <= handled_seq has been turned into jobs (or needed none)
    handled_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: arrival of the first and the latest message not yet handled (the debounce window)
    pending_since: Mapped[datetime | None] = mapped_column(index=True)
    last_message_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        # Names are @mentions, which match in any case: one live agent a name key
        # (agentq.names) in a tenant. Another tenant's names are no concern of this one's.
        Index(
            "uq_agents_tenant_name_key",
            "tenant_id",
            "name_key",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    #: what makes two names the same (NFC, case-folded: `agentq.names.key`), computed
    #: here rather than by the database's lower(), which is ASCII-only on SQLite
    name_key: Mapped[str] = mapped_column(String(300), default=_name_key)
    #: the tenant that owns it (agents made in-process: the Client's or CLI's tenant,
    #: by default the tenant named "default")
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[str] = mapped_column(Text, default="")
    backstory: Mapped[str] = mapped_column(Text, default="")
    goal: Mapped[str] = mapped_column(Text, default="")
    system_prompt: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(200), default="openai")
    #: model, temperature, max_tokens, endpoint override; never an API key
    model_config_: Mapped[dict[str, Any]] = mapped_column("model_config", default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer, default=1)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=10)
    total_responses: Mapped[int] = mapped_column(Integer, default=0)
    last_response_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: set when deleted (soft): hidden from lists and lookups, never a responder again
    deleted_at: Mapped[datetime | None]


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("conversation_id", "agent_id"),
        UniqueConstraint("conversation_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # user | agent | system
    #: the producer's own id for a human user
    user_id: Mapped[str | None] = mapped_column(String(200))
    agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agents.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The ordering guarantee, enforced by the database itself: one open job a conversation.
        Index(
            "uq_jobs_one_open_per_conversation",
            "conversation_id",
            unique=True,
            postgresql_where=text("status IN ('active', 'delayed')"),
            sqlite_where=text("status IN ('active', 'delayed')"),
        ),
        Index("ix_jobs_conversation_status", "conversation_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id"), index=True)
    trigger_message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id"), index=True)
    #: waiting | active | completed | failed | delayed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: the provider's answer, stored before completion so that completion can be re-run
    result: Mapped[dict[str, Any] | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    #: fencing token: bumped at every claim; a stale worker's writes carry an old one
    lease_token: Mapped[int] = mapped_column(Integer, default=0)
    #: the claim whose LLM call started (its worker took it up): `attempts` counts calls
    #: started, so a claim whose task never ran costs no attempt
    started_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: "hostname/pid" of the worker process that took up the job's latest claim (its call
    #: holds the lease): None from a claim until its worker takes it up; kept afterwards
    #: (a delayed, failed or completed job names who ran its last attempt)
    lease_holder: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(index=True)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        UniqueConstraint("conversation_id", "idempotency_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("participants.id"), index=True)
    #: user | assistant | system
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    #: a hash of what was posted with the idempotency key, to spot a reused key
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: the job whose reply this is; UNIQUE, so a job can never write two replies (no FK:
    #: jobs already reference messages, and a cycle would need ALTER on SQLite)
    reply_to_job_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LLMMessage(Base):
    __tablename__ = "llm_messages"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MessageJob(Base):
    __tablename__ = "message_jobs"
    __table_args__ = (UniqueConstraint("message_id", "job_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id"), index=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    #: trigger (the message caused the job) | reply (the job wrote the message)
    status: Mapped[str] = mapped_column(String(16), default="trigger", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentConversationContext(Base):
    __tablename__ = "agent_conversation_context"
    __table_args__ = (UniqueConstraint("agent_id", "conversation_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    #: the newest seq folded into `messages`
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: the recent history, already mapped to LLM roles from this agent's point of view
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_unpublished", "published_at", "id"),
        Index("ix_events_commit_order", "txid", "id"),
        Index("ix_events_conversation_commit_order", "conversation_id", "txid", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    #: the writing transaction's id on PostgreSQL (migration 0004 makes that the server
    #: default): the feed reads (txid, id) in order, which is commit order; 0 on SQLite,
    #: where id order is commit order already
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Tenant(Base):
    """Who owns agents and conversations behind the HTTP API; API keys belong to one."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the tenant's own limit on pending messages (agentq.runtime.backpressure); None:
    #: AGENTQ_TENANT_MAX_PENDING_MESSAGES, 0: no limit
    max_pending_messages: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: only its sha256 is stored, the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    #: the first characters of the key, so that operators can tell keys apart
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
