"""How far a benchmark's conversations got, and each turn timed (ms), from what agentq
stored (read through `agentq.bench.reads`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from agentq.store.bench import completed_jobs, jobs_by_status, open_work, turn_times


def settled(conv_ids: list[uuid.UUID]) -> bool:
    """Every message of these conversations handled and no job of theirs unfinished."""
    behind, unfinished = open_work(conv_ids)
    return not behind and not unfinished


def backlog(conv_ids: list[uuid.UUID]) -> str:
    """What keeps these conversations from settling (for the timeout message)."""
    behind, _ = open_work(conv_ids)
    return (
        f"{behind} conversations with unhandled messages, jobs by status {jobs_by_status(conv_ids)}"
    )


def turns_of(conv_ids: list[uuid.UUID], debounce: float, max_wait: float) -> list[dict[str, float]]:
    """Each completed job of these conversations, timed from the database (ms)."""
    out = []
    for t in turn_times(conv_ids):
        first, last, created = t.first_trigger_at, t.last_trigger_at, t.created_at
        due = min(last + timedelta(seconds=debounce), first + timedelta(seconds=max_wait))
        window = (due - first).total_seconds() * 1000
        llm = float((t.result or {}).get("latency_ms", 0))
        e2e = (t.replied_at - first).total_seconds() * 1000
        out.append(
            {
                "e2e": e2e,
                "debounce": (created - first).total_seconds() * 1000,
                "queue": (t.started_at - created).total_seconds() * 1000,
                "llm": llm,
                "completion": (t.replied_at - t.started_at).total_seconds() * 1000 - llm,
                "overhead": e2e - window - llm,
                "fire_error": (created - due).total_seconds() * 1000,
                "first": first.timestamp(),
                "replied": t.replied_at.timestamp(),
            }
        )
    return out


def pipeline_done(conv_ids: list[uuid.UUID]) -> bool:
    """Every conversation of the hand-written pipeline has its completed job."""
    return completed_jobs(conv_ids) == len(conv_ids)
