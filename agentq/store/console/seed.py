"""Bulk seeding for ops/scripts/console_scale.py: conversations and a long history
inserted at once (Core bulk inserts), to time the console's pages at scale."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from agentq.clock import utcnow
from agentq.states import JobStatus, LinkStatus
from agentq.store import tables
from agentq.store.jobs import link_row
from agentq.store.session import transaction


def seed_conversations(tenant_id: uuid.UUID, count: int, *, batch: int = 5000) -> None:
    """Insert `count` empty conversations of the tenant at once (Core bulk inserts), with
    distinct creation times a millisecond apart."""
    base = utcnow() - timedelta(milliseconds=count + 10)
    table = tables.conversations
    with transaction() as s:
        conn = s.connection()
        for start in range(0, count, batch):
            rows = [
                {
                    "id": uuid.uuid4(),
                    "kind": "dm",
                    "title": f"bulk {i}",
                    "tenant_id": tenant_id,
                    "settings": {},
                    "last_seq": 0,
                    "handled_seq": 0,
                    "created_at": base + timedelta(milliseconds=i),
                    "updated_at": base + timedelta(milliseconds=i),
                }
                for i in range(start, min(start + batch, count))
            ]
            conn.execute(insert(table), rows)


def seed_history(
    tenant_id: uuid.UUID, agent_id: uuid.UUID, *, messages: int, jobs: int
) -> uuid.UUID:
    """A conversation of the tenant with `messages` messages and `jobs` completed jobs
    (each answering a run of user messages with one reply among them), inserted at once.
    Returns its id."""
    now = utcnow()
    start = now - timedelta(seconds=messages * 2)
    conv_id, user_pid, agent_pid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # every `stride`-th message is the reply of one job to the messages before it
    stride = max(messages // max(jobs, 1), 2)
    msg_rows: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    link_rows: list[dict[str, Any]] = []
    pending: list[uuid.UUID] = []
    for seq in range(1, messages + 1):
        at = start + timedelta(seconds=2 * seq)
        mid = uuid.uuid4()
        is_reply = seq % stride == 0 and len(job_rows) < jobs and pending
        row = {
            "id": mid,
            "conversation_id": conv_id,
            "seq": seq,
            "author_id": agent_pid if is_reply else user_pid,
            "role": "assistant" if is_reply else "user",
            "content": f"reply number {len(job_rows) + 1}" if is_reply else f"message {seq}",
            "reply_to_job_id": None,
            "created_at": at,
            "updated_at": at,
        }
        if is_reply:
            jid = uuid.uuid4()
            row["reply_to_job_id"] = jid
            job_rows.append(
                {
                    "id": jid,
                    "conversation_id": conv_id,
                    "agent_id": agent_id,
                    "trigger_message_id": pending[0],
                    "status": JobStatus.COMPLETED,
                    "attempts": 1,
                    "max_attempts": 3,
                    "result": {"latency_ms": 900},
                    "created_at": at - timedelta(milliseconds=1500),
                    "started_at": at - timedelta(milliseconds=1400),
                    "finished_at": at - timedelta(milliseconds=100),
                    "updated_at": at,
                }
            )
            for trig in pending:
                link_rows.append(link_row(trig, jid, agent_id, conv_id, LinkStatus.TRIGGER, at))
            link_rows.append(link_row(mid, jid, agent_id, conv_id, LinkStatus.REPLY, at))
            pending = []
        else:
            pending.append(mid)
        msg_rows.append(row)
    with transaction() as s:
        conn = s.connection()
        conn.execute(
            insert(tables.conversations),
            [
                {
                    "id": conv_id,
                    "kind": "dm",
                    "title": "a long conversation",
                    "tenant_id": tenant_id,
                    "settings": {},
                    "last_seq": messages,
                    "handled_seq": messages,
                    "last_message_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        conn.execute(
            insert(tables.participants),
            [
                {
                    "id": user_pid,
                    "conversation_id": conv_id,
                    "kind": "user",
                    "user_id": "u1",
                    "agent_id": None,
                    "display_name": "u1",
                    "joined_at": start,
                },
                {
                    "id": agent_pid,
                    "conversation_id": conv_id,
                    "kind": "agent",
                    "user_id": None,
                    "agent_id": agent_id,
                    "display_name": "agent",
                    "joined_at": start,
                },
            ],
        )
        conn.execute(insert(tables.messages), msg_rows)
        if job_rows:
            conn.execute(insert(tables.jobs), job_rows)
            conn.execute(insert(tables.message_jobs), link_rows)
    return conv_id
