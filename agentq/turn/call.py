"""Call: the LLM request for a claimed job, the provider call itself, and the answer as it
may be stored.

The call runs outside any transaction. What comes back is cleaned before it is kept: a
provider must not be able to fill the database or put bytes in it that it cannot store.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agentq import logging as agentq_logging
from agentq import profiles
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import ProviderError, UnknownProfile
from agentq.providers import ChatRequest, ChatResult, acall_with_retries, get_provider
from agentq.runtime import breaker
from agentq.states import CANCELLING, JobStatus
from agentq.store import contexts, jobs
from agentq.store.session import Tx
from agentq.turn.context import MAX_SEQ, build_messages, chat_request, history_after

log = logging.getLogger(__name__)

#: how much of a failure reason is kept and shown in the conversation
REASON_MAX = 300


def _worker_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


#: this process's name as a job's `lease_holder` shows it ("hostname/pid"): made once,
#: and again in a forked child (a prefork worker)
WORKER_NAME = _worker_name()


def _forked() -> None:
    global WORKER_NAME
    WORKER_NAME = _worker_name()


os.register_at_fork(after_in_child=_forked)


@dataclass(frozen=True)
class Call:
    """What a claimed job's LLM call needs: its request (None when the answer is stored
    already: the last run died before writing it)."""

    job_id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID
    token: int
    provider: str
    request: ChatRequest | None
    #: the conversation may cancel this call (double-texting interrupt or rollback)
    cancellable: bool = False
    #: why no request could be made (the agent's model profile is not declared): the
    #: call fails with it, not retried
    failure: str | None = None
    #: the model profile called (its circuit breaker hears how the call went)
    profile: str = profiles.DEFAULT
    #: seconds the job must wait before calling: the profile's circuit is open (no
    #: attempt was counted)
    held: float | None = None
    #: the call is the half-open circuit's one probe
    probe: bool = False
    #: the context cache's new content, written with the reply (`effects.complete`)
    cache: contexts.Pending | None = None

    @property
    def answered(self) -> bool:
        return self.request is None and self.failure is None and self.held is None


def prepare(tx: Tx, job_id: uuid.UUID, token: int, *, durable: bool = True) -> Call | None:
    """The call for the job's current claim, or None if the claim is stale. Writes the
    attempt's start; the context cache's new content goes with the call (`Call.cache`),
    written by its reply. Not `durable`: its commit does not wait for the WAL flush (see
    `agentq.turn.effects.prepare` for why that is safe)."""
    found = jobs.for_call(tx, job_id, durable=durable)
    if found is None or found.status != JobStatus.ACTIVE or found.lease_token != token:
        return None
    cid = found.conversation_id
    if found.result is not None:  # (a JSON null reads as None too)
        return Call(job_id, cid, found.id, token, found.provider, None)
    model_config = found.model_config or {}
    profile: profiles.ModelProfile | None = None
    try:
        profile = profiles.of_agent(model_config)
    except UnknownProfile as exc:
        unknown = exc.name
    # The circuit is asked before the attempt counts: a job held by it spends none.
    admission = breaker.admit(profile.name, job_id, cid) if profile else breaker.Admission()
    if profile is not None and admission.wait is not None:
        held = admission.wait
        return Call(
            job_id, cid, found.id, token, profile.provider, None, profile=profile.name, held=held
        )
    lease = timedelta(seconds=get_settings().job_lease_seconds)
    limit = get_settings().context_messages
    upto = found.last_trigger_seq or MAX_SEQ  # (a job always has triggers)
    cache = (
        None
        if found.cache_id is None
        else contexts.Cached(found.cache_id, found.cache_last_seq, found.cache_messages)
    )
    # The attempt starts, and the history newer than the cache is read, in one statement.
    after = history_after(cache, upto)
    started = jobs.start_reading(
        tx, job_id, token, utcnow() + lease, WORKER_NAME, (cid, after, upto, limit)
    )
    if started is None:
        if profile is not None and admission.probe:
            breaker.release_probe(profile.name, job_id)
        return None  # this claim's call runs (or ran) already: a redelivered task
    agentq_logging.bind(agent=found.name, conversation_id=cid)
    if profile is None:
        reason = f"the agent's model profile {unknown!r} is not declared by the operator"
        return Call(job_id, cid, found.id, token, found.provider, None, failure=reason)
    deferred: list[contexts.Pending] = []
    prompt = build_messages(
        tx, found, cid, limit, upto, cache=cache, rows=started[1], deferred=deferred
    )
    request = chat_request(model_config, prompt)
    cancellable = (found.settings or {}).get("double_texting") in CANCELLING
    # The profile's provider, as declared now (not the one stored when the agent was made).
    return Call(
        job_id,
        cid,
        found.id,
        token,
        profile.provider,
        request,
        cancellable,
        profile=profile.name,
        probe=admission.probe,
        cache=deferred[0] if deferred else None,
    )


async def call(
    c: Call,
    on_token: Callable[[str], None] | None = None,
    on_restart: Callable[[], None] | None = None,
) -> ChatResult:
    """Call the provider, retrying transient errors (tenacity), streaming to `on_token`;
    `on_restart` is told when a retry starts the reply over. Raises what still fails;
    cancelling it closes the HTTP request."""
    if c.failure is not None:
        raise ProviderError(c.failure, retryable=False)
    request = c.request
    assert request is not None, "an answered call is written, not called"
    s = get_settings().llm
    return await acall_with_retries(
        get_provider(c.provider),
        request,
        max_retries=s.max_retries,
        backoff_base=s.backoff_base,
        backoff_max=s.backoff_max,
        on_token=on_token,
        on_retry=(lambda _error, _wait: on_restart()) if on_restart else None,
    )


#: finish reasons that say the model will not do better if asked again
_FINAL_REASONS = ("length", "refusal", "content_filter")


def unusable(result: ChatResult) -> tuple[str, bool] | None:
    """Why an answer cannot be a reply, and whether asking again may help; None if it
    can. An empty reply is never taken for an answer."""
    if result.content.strip():
        return None
    retryable = result.finish_reason not in _FINAL_REASONS
    return (
        f"the provider returned an empty reply (finish reason: {result.finish_reason})",
        retryable,
    )


def short_reason(exc: BaseException) -> str:
    """What a failure shows in the conversation: the error's text, cut short."""
    text = str(exc) or type(exc).__name__
    return text[:REASON_MAX]


def clean_reply(content: str) -> tuple[str, bool]:
    """The reply as it can be stored: at most AGENTQ_MAX_REPLY_LENGTH characters, without
    NUL or lone surrogates (no database takes them). Returns (text, truncated)."""
    limit = get_settings().max_reply_length
    truncated = len(content) > limit
    text = content[:limit].replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"
    return text, truncated


#: the longest model name stored (`llm_messages.model`)
MODEL_MAX = 200
#: token counts are 32-bit integer columns
COUNT_MAX = 2**31 - 1


def _count(value: object) -> int:
    return min(max(value, 0), COUNT_MAX) if isinstance(value, int) else 0


def answer(job_id: uuid.UUID, result: ChatResult) -> dict[str, Any]:
    """The provider's answer as a job keeps it (cut to AGENTQ_MAX_REPLY_LENGTH characters:
    a runaway provider must not fill the database)."""
    content, truncated = clean_reply(result.content)
    if truncated or result.finish_reason == "length":
        log.warning(
            "job %s: reply of %d characters cut to %d", job_id, len(result.content), len(content)
        )
    return {
        "content": content,
        "truncated": truncated or result.finish_reason == "length",
        "finish_reason": result.finish_reason,
        # Providers clean what they parse; a provider of a user's own may not, and a
        # value the database cannot take would block the conversation.
        "model": result.model.replace("\x00", "")[:MODEL_MAX],
        "prompt_tokens": _count(result.prompt_tokens),
        "completion_tokens": _count(result.completion_tokens),
        "latency_ms": int(result.latency * 1000),
        "requests": result.requests,
    }
