"""What a chaos run reads from the database: open work, recovery after a fault, and the
anomalies counted once the system is quiet."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from ops.chaos.config import BODY_MARKER, CHAOS_API_KEY, Anomalies, ChaosReport

if TYPE_CHECKING:
    from agentq.store.models import Job, Message
    from ops.chaos.load import Faults

#: job states after which nothing more happens to a job
FINISHED = ("completed", "failed", "cancelled")


def unfinished_before(when: datetime) -> int:
    """User messages accepted before `when` whose jobs are not all finished (or that are
    not dispatched yet)."""
    from agentq.store.models import Conversation, Job, Message, MessageJob
    from agentq.store.session import reader

    with reader() as s:
        undispatched = (
            s.scalar(
                select(func.count())
                .select_from(Message)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(
                    Message.role == "user",
                    Message.created_at <= when,
                    Message.seq > Conversation.handled_seq,
                )
            )
            or 0
        )
        running = (
            s.scalar(
                select(func.count(func.distinct(Message.id)))
                .select_from(Message)
                .join(MessageJob, MessageJob.message_id == Message.id)
                .join(Job, Job.id == MessageJob.job_id)
                .where(
                    Message.role == "user",
                    Message.created_at <= when,
                    Job.status.not_in(FINISHED),
                )
            )
            or 0
        )
        return int(undispatched) + int(running)


def first_finish_after(when: datetime) -> datetime | None:
    from agentq.store.models import Job
    from agentq.store.session import reader

    with reader() as s:
        return s.scalar(select(func.min(Job.finished_at)).where(Job.finished_at > when))


def busy() -> int:
    """Open work the database knows of: unfinished jobs and undispatched conversations."""
    from agentq.store.models import Conversation, Job
    from agentq.store.session import reader

    with reader() as s:
        jobs = (
            s.scalar(select(func.count()).select_from(Job).where(Job.status.not_in(FINISHED))) or 0
        )
        convs = (
            s.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.handled_seq < Conversation.last_seq)
            )
            or 0
        )
        return int(jobs) + int(convs)


def scan_logs(log_dir: Path) -> list[str]:
    """Lines of the processes' logs that hold the API key or a message body."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open(errors="replace") as f:
            for n, line in enumerate(f, 1):
                if CHAOS_API_KEY in line or BODY_MARKER in line:
                    found.append(f"{path.name}:{n}: {line.strip()[:160]}")
    return found


def _safe(fn: Callable[..., Any], default: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - the database may be restarting under us
        return default


class RecoveryWatch(threading.Thread):
    """Times how long after a fault everything accepted before it is finished."""

    def __init__(self, faults: Faults, report: ChaosReport) -> None:
        super().__init__(daemon=True)
        self.faults, self.report = faults, report
        self.stop = threading.Event()

    def run(self) -> None:
        r = self.report
        while not self.stop.wait(0.5):
            flushed, restarted = self.faults.flushed_at, self.faults.redis_restarted_at
            if flushed is not None:
                if r.flushall_first_completion_seconds is None:
                    first = _safe(first_finish_after, None, flushed)
                    if first is not None:
                        r.flushall_first_completion_seconds = (first - flushed).total_seconds()
                if (
                    r.flushall_recovery_seconds is None
                    and _safe(unfinished_before, 1, flushed) == 0
                ):
                    r.flushall_recovery_seconds = (datetime.now(UTC) - flushed).total_seconds()
            if (
                restarted is not None
                and r.redis_restart_recovery_seconds is None
                and _safe(unfinished_before, 1, restarted) == 0
            ):
                r.redis_restart_recovery_seconds = (datetime.now(UTC) - restarted).total_seconds()


def wait_settled(timeout: float, stable_for: int = 4) -> tuple[bool, float]:
    """Wait until the database shows no open work for `stable_for` checks in a row."""
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout:
        quiet = quiet + 1 if _safe(busy, 1) == 0 else 0
        if quiet >= stable_for:
            return True, time.monotonic() - start
        time.sleep(1.0)
    return False, time.monotonic() - start


def check_database() -> Anomalies:
    """Count anomalies in what the database holds now (call once the system is quiet)."""
    from agentq.store.models import Event, Job, Message, MessageJob
    from agentq.store.session import reader

    a = Anomalies()
    with reader() as s:
        messages = {m.id: m for m in s.scalars(select(Message))}
        jobs = {j.id: j for j in s.scalars(select(Job))}
        links = list(s.scalars(select(MessageJob)))
        failed_events = {
            e.payload.get("job_id")
            for e in s.scalars(select(Event).where(Event.type == "job.failed"))
        }
    triggers: dict[uuid.UUID, list[Message]] = defaultdict(list)  # job -> trigger messages
    covered: dict[tuple[uuid.UUID, uuid.UUID], list[Job]] = defaultdict(list)  # msg, agent
    reply_links: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for link in links:
        msg, job = messages.get(link.message_id), jobs.get(link.job_id)
        if msg is None or job is None:
            a.note("inconsistent", f"link {link.id} points at a missing message or job")
            continue
        if not (
            link.conversation_id == msg.conversation_id == job.conversation_id
            and link.agent_id == job.agent_id
        ):
            a.note("inconsistent", f"link {link.id} disagrees with job {job.id}")
        if link.status == "trigger":
            triggers[job.id].append(msg)
            covered[(msg.id, job.agent_id)].append(job)
        elif link.status == "reply":
            reply_links[job.id].append(msg.id)
            if msg.reply_to_job_id != job.id:
                a.note("inconsistent", f"reply link of job {job.id} to a message of another")
    replies: dict[uuid.UUID, list[Message]] = defaultdict(list)
    for m in messages.values():
        if m.reply_to_job_id is not None:
            replies[m.reply_to_job_id].append(m)

    # Every accepted (user) message: covered by exactly one finished job per agent, and by
    # at least one job.
    users = [m for m in messages.values() if m.role == "user" and m.deleted_at is None]
    a.accepted_messages = len(users)
    by_msg: dict[uuid.UUID, list[tuple[uuid.UUID, list[Job]]]] = defaultdict(list)
    for (mid, agent_id), js in covered.items():
        by_msg[mid].append((agent_id, js))
    for m in users:
        per_agent = by_msg.get(m.id, [])
        if not per_agent:
            a.note("lost", f"message seq {m.seq} of {m.conversation_id} has no job")
            continue
        for agent_id, js in per_agent:
            if len(js) > 1:
                a.note(
                    "duplicated",
                    f"message seq {m.seq} of {m.conversation_id} is a trigger "
                    f"of {len(js)} jobs of agent {agent_id}",
                )
            for job in js:
                if job.status not in ("completed", "failed"):
                    a.note("lost", f"job {job.id} ended {job.status}")

    # Each job: completed with exactly one reply, or failed visibly.
    by_conv: dict[uuid.UUID, list[Job]] = defaultdict(list)
    for job in jobs.values():
        by_conv[job.conversation_id].append(job)
        if not triggers.get(job.id):
            a.note("inconsistent", f"job {job.id} has no trigger link")
        elif job.trigger_message_id != min(triggers[job.id], key=lambda m: m.seq).id:
            a.note("inconsistent", f"job {job.id} trigger_message_id is not its first trigger")
        n = len(replies.get(job.id, []))
        if job.status == "completed":
            a.completed_jobs += 1
            if n == 0:
                a.note("lost", f"job {job.id} completed without a reply")
            elif n > 1:
                a.note("duplicated", f"job {job.id} has {n} replies")
            if len(reply_links.get(job.id, [])) != min(n, 1) or n == 0:
                a.note(
                    "inconsistent",
                    f"job {job.id} has {len(reply_links.get(job.id, []))} reply links",
                )
        else:
            if n:
                a.note("duplicated", f"job {job.id} is {job.status} yet has a reply")
            if job.status == "failed":
                a.failed_visible += 1
                if str(job.id) not in failed_events:
                    a.note("lost", f"job {job.id} failed without a job.failed event")

    notices: dict[uuid.UUID, int] = defaultdict(int)
    for m in messages.values():
        if m.role == "system" and "could not respond" in m.content:
            notices[m.conversation_id] += 1
    for conv_id, js in by_conv.items():
        failed = sum(1 for j in js if j.status == "failed")
        if notices[conv_id] < failed:
            a.note("lost", f"{conv_id}: {failed} failed jobs, {notices[conv_id]} notices")
        _check_order(a, conv_id, js, triggers, replies, messages)
    return a


def _check_order(
    a: Anomalies,
    conv_id: uuid.UUID,
    js: list[Job],
    triggers: dict[uuid.UUID, list[Message]],
    replies: dict[uuid.UUID, list[Message]],
    messages: dict[uuid.UUID, Message],
) -> None:
    # Overlap: a conversation's jobs ran one after another.
    never = datetime.max.replace(tzinfo=UTC)
    ran = sorted((j for j in js if j.started_at is not None), key=lambda j: j.started_at or never)
    for prev, nxt in zip(ran, ran[1:], strict=False):
        if prev.finished_at is None or (nxt.started_at or never) < prev.finished_at:
            a.note("overlapping", f"jobs {prev.id} and {nxt.id} of {conv_id} overlap")

    # Order: jobs started in the order of their triggers (a batch per dispatch), and each
    # reply comes after its triggers and after the replies of earlier jobs.
    def first_seq(j: Job) -> int:
        return min((m.seq for m in triggers.get(j.id, [])), default=0)

    if [j.id for j in ran] != [
        j.id for j in sorted(ran, key=lambda j: (first_seq(j), j.created_at, j.id))
    ]:
        a.note("reordered", f"jobs of {conv_id} started out of trigger order")
    # Jobs of one dispatch (a channel: one per agent) share their triggers; they run, and
    # so answer, in the order advance claims them.
    answered = sorted(
        (j for j in js if replies.get(j.id)), key=lambda j: (first_seq(j), j.created_at, j.id)
    )
    last_reply = 0
    for j in answered:
        reply = replies[j.id][0]
        top = max(m.seq for m in triggers.get(j.id, [])) if triggers.get(j.id) else 0
        if reply.seq <= top or reply.seq <= last_reply:
            a.note("reordered", f"reply seq {reply.seq} of {conv_id} is out of order")
        last_reply = max(last_reply, reply.seq)
