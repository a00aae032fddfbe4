"""Small helpers shared by the tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select

from agentq.client import Client
from agentq.schemas import ConversationOut, ParticipantOut
from agentq.store.models import Event, Job, Message, MessageJob
from agentq.store.session import reader

T = TypeVar("T")


def wait_until(fn: Callable[[], T], timeout: float = 30.0, every: float = 0.1, what: str = "") -> T:
    """Poll `fn` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}")
        time.sleep(every)


def make_dm(
    client: Client, *, settings: dict[str, Any] | None = None, **agent: Any
) -> tuple[ConversationOut, ParticipantOut, uuid.UUID]:
    """A DM of a fresh user with a fresh agent; returns (conversation, user, agent id)."""
    name = agent.pop("name", f"bot-{uuid.uuid4().hex[:8]}")
    a = client.create_agent(name, **agent)
    conv = client.create_conversation("dm", settings=settings)
    client.add_participant(conv.id, agent=a.id)
    user = client.add_participant(conv.id, user_id=f"user-{uuid.uuid4().hex[:6]}")
    return conv, user, a.id


def jobs_of(conversation_id: uuid.UUID) -> list[Job]:
    with reader() as s:
        return list(
            s.scalars(
                select(Job).where(Job.conversation_id == conversation_id).order_by(Job.created_at)
            )
        )


def replies_of(conversation_id: uuid.UUID) -> list[Message]:
    with reader() as s:
        return list(
            s.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.role == "assistant")
                .order_by(Message.seq)
            )
        )


def trigger_links(job_id: uuid.UUID) -> list[int]:
    with reader() as s:
        return list(
            s.scalars(
                select(Message.seq)
                .join(MessageJob, MessageJob.message_id == Message.id)
                .where(MessageJob.job_id == job_id, MessageJob.status == "trigger")
                .order_by(Message.seq)
            )
        )


def count(model: Any, *where: Any) -> int:
    with reader() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def events_of(conversation_id: uuid.UUID, type_: str | None = None) -> list[Event]:
    with reader() as s:
        q = select(Event).where(Event.conversation_id == conversation_id)
        if type_:
            q = q.where(Event.type == type_)
        return list(s.scalars(q.order_by(Event.id)))
