"""What `agentq bench` reads back from the database: how far its conversations got, and
the times agentq stored for each turn. One statement each, built once.

Written to move as it is to `agentq/store/bench.py` (only `agentq.store` speaks SQL); its
one caller is `agentq/bench/turns.py`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, func, select
from sqlalchemy.orm import aliased

from agentq.states import UNFINISHED_JOB_STATES, JobStatus, LinkStatus
from agentq.store.models import Conversation, Job, Message, MessageJob
from agentq.store.session import reader


@dataclass(frozen=True)
class TurnTimes:
    """When a completed job's turn happened, as the database recorded it."""

    #: the job was dispatched (the debounce timer fired)
    created_at: datetime
    #: the job was first claimed
    started_at: datetime
    #: the provider's answer kept on the job (`latency_ms` among others)
    result: dict[str, Any] | None
    #: the reply was written
    replied_at: datetime
    #: the first and last of the messages the job answers
    first_trigger_at: datetime
    last_trigger_at: datetime


_IDS: BindParameter[Any] = bindparam("conv_ids", expanding=True)
_REPLY = aliased(Message)

#: how many of the conversations :conv_ids have messages not yet handled
_BEHIND = (
    select(func.count())
    .select_from(Conversation)
    .where(Conversation.id.in_(_IDS), Conversation.handled_seq < Conversation.last_seq)
)
#: how many jobs of the conversations :conv_ids are unfinished
_UNFINISHED = (
    select(func.count())
    .select_from(Job)
    .where(Job.conversation_id.in_(_IDS), Job.status.in_(UNFINISHED_JOB_STATES))
)
#: (status, count) of the jobs of the conversations :conv_ids
_BY_STATUS = (
    select(Job.status, func.count()).where(Job.conversation_id.in_(_IDS)).group_by(Job.status)
)
#: how many jobs of the conversations :conv_ids are completed
_COMPLETED = (
    select(func.count())
    .select_from(Job)
    .where(Job.conversation_id.in_(_IDS), Job.status == JobStatus.COMPLETED)
)
#: each completed job of the conversations :conv_ids with its reply's and triggers' times
_TURNS = (
    select(
        Job.created_at,
        Job.started_at,
        Job.result,
        _REPLY.created_at,
        func.min(Message.created_at),
        func.max(Message.created_at),
    )
    .join(MessageJob, (MessageJob.job_id == Job.id) & (MessageJob.status == LinkStatus.TRIGGER))
    .join(Message, Message.id == MessageJob.message_id)
    .join(_REPLY, _REPLY.reply_to_job_id == Job.id)
    .where(Job.conversation_id.in_(_IDS), Job.status == JobStatus.COMPLETED)
    .group_by(Job.id, _REPLY.created_at)
)


def open_work(conv_ids: list[uuid.UUID]) -> tuple[int, int]:
    """(conversations with unhandled messages, unfinished jobs) among `conv_ids`."""
    params = {"conv_ids": conv_ids}
    with reader() as s:
        return int(s.scalar(_BEHIND, params) or 0), int(s.scalar(_UNFINISHED, params) or 0)


def jobs_by_status(conv_ids: list[uuid.UUID]) -> dict[str, int]:
    """How many jobs of `conv_ids` are in each status (statuses with none are absent)."""
    with reader() as s:
        return {status: n for status, n in s.execute(_BY_STATUS, {"conv_ids": conv_ids})}


def completed_jobs(conv_ids: list[uuid.UUID]) -> int:
    """How many jobs of `conv_ids` are completed."""
    with reader() as s:
        return int(s.scalar(_COMPLETED, {"conv_ids": conv_ids}) or 0)


def turn_times(conv_ids: list[uuid.UUID]) -> list[TurnTimes]:
    """The times of every completed job of `conv_ids`."""
    with reader() as s:
        return [TurnTimes(*row) for row in s.execute(_TURNS, {"conv_ids": conv_ids})]
