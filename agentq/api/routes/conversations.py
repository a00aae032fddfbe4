"""`/v1/conversations`: conversations, their participants and messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from agentq import turn
from agentq.api import slots, waits
from agentq.api.auth import Acting, Caller
from agentq.api.models import ConversationIn, MessageIn, MessagePage, ParticipantIn, PostResult
from agentq.api.problems import IdempotencyKeyReused, NotReady
from agentq.api.settings import api_settings
from agentq.errors import Conflict, ProviderError
from agentq.ops import conversations, jobs, tenancy
from agentq.ops.tenancy import own_agent, own_conversation
from agentq.schemas import ConversationOut, MessageOut, ParticipantOut, PostedMessage

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

#: the largest page a list answers
MAX_PAGE = 500
#: event ids and offsets beyond this are nonsense; bounding them keeps them valid BIGINTs
MAX_CURSOR = 2**62
#: messages.seq is a 32-bit INTEGER: a larger after_seq would be a database error
MAX_SEQ = 2**31 - 1


@router.post("", status_code=201, response_model=ConversationOut)
def create_conversation(body: ConversationIn, who: Acting) -> ConversationOut:
    return conversations.create_conversation(
        body.kind, title=body.title, settings=body.settings, tenant_id=who.tenant_id
    )


@router.get("", response_model=list[ConversationOut])
def list_conversations(
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
) -> list[ConversationOut]:
    """The tenant's conversations, newest first."""
    return tenancy.list_conversations(who, limit=limit, offset=offset)


@router.get("/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: uuid.UUID, who: Caller) -> ConversationOut:
    own_conversation(who, conversation_id)
    return conversations.get_conversation(conversation_id)


@router.post("/{conversation_id}/participants", status_code=201, response_model=ParticipantOut)
def add_participant(conversation_id: uuid.UUID, body: ParticipantIn, who: Acting) -> ParticipantOut:
    """Add one of your agents or one of your users; adding the same one again returns it."""
    own_conversation(who, conversation_id)
    if body.agent_id is not None:
        own_agent(who, body.agent_id)
    return conversations.add_participant(
        conversation_id,
        agent=body.agent_id,
        user_id=body.user_id,
        display_name=body.display_name,
    )


@router.get("/{conversation_id}/participants", response_model=list[ParticipantOut])
def list_participants(conversation_id: uuid.UUID, who: Caller) -> list[ParticipantOut]:
    own_conversation(who, conversation_id)
    return conversations.list_participants(conversation_id)


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=PostResult,
    responses={
        202: {"model": PostResult, "description": "Accepted; no reply within `wait` seconds."},
        422: {
            "description": "Invalid input (`field` names it), or the Idempotency-Key was "
            "used with another body; nothing was stored."
        },
        429: {
            "description": "`?wait=` while the tenant's waiting posts are at their cap "
            "(AGENTQ_API_MAX_WAITS_PER_TENANT), or too many messages of the tenant are "
            "pending: nothing was stored; retry after `Retry-After` seconds.",
        },
        503: {"description": "`?wait=` while Redis does not answer; post without `wait`."},
    },
)
async def post_message(
    conversation_id: uuid.UUID,
    body: MessageIn,
    who: Acting,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
    wait: Annotated[float, Query(ge=0, le=600, description="Seconds to wait for the reply.")] = 0,
) -> PostResult | JSONResponse:
    """Post a message; it is stored before this answers, and agents answer it.

    With `Idempotency-Key`, a retry with the same body answers the first message again
    (header `Idempotent-Replayed: true`) and writes nothing; the same key with another
    body is a 422. With `?wait=SECONDS`, the answer holds the agent's reply, or is a 202
    with the job id if there was no reply in time. A tenant has at most
    AGENTQ_API_MAX_WAITS_PER_TENANT posts waiting at once: past that a post with `wait`
    is refused whole (429 with `Retry-After`, nothing stored).
    """
    wait = min(wait, api_settings().max_wait_seconds)
    lease: slots.Lease | None = None
    if wait > 0:  # before any database work: a tenant's surplus costs one Redis call
        try:
            lease = await _wait_slot(who.tenant_id, wait)
        except slots.Busy as busy:
            return busy.response()
    try:
        await run_in_threadpool(own_conversation, who, conversation_id)
        posted = await run_in_threadpool(_post, conversation_id, body, idempotency_key)
        if posted.duplicate:
            response.headers["Idempotent-Replayed"] = "true"
        message = MessageOut.model_validate(posted.model_dump(exclude={"duplicate"}))
        result = PostResult(message=message, duplicate=posted.duplicate)
        if wait > 0:
            try:
                result.reply = await waits.reply_to(posted.id, conversation_id, wait)
            except ProviderError:
                result.job_status = "failed"
            if result.reply is not None:
                result.job_status = "completed"
            elif result.job_status is None:
                response.status_code = 202
            result.job_id, status = await run_in_threadpool(_job_of, posted.id)
            result.job_status = result.job_status or status
        return result
    finally:
        if lease is not None:
            await lease.release()


async def _wait_slot(tenant_id: uuid.UUID, wait: float) -> slots.Lease:
    """One of the tenant's waiting slots, for `wait` seconds; Busy past the cap."""
    cap = api_settings().max_waits_per_tenant
    try:
        got = await slots.acquire("waits", tenant_id, cap, wait)
    except Exception as exc:  # noqa: BLE001 - Redis down: no cap can be kept
        raise NotReady(f"waiting unavailable: {type(exc).__name__}; post without wait") from exc
    if isinstance(got, slots.Lease):
        return got
    raise slots.Busy(
        f"{cap} posts of this tenant are waiting for replies already "
        "(AGENTQ_API_MAX_WAITS_PER_TENANT); nothing was stored",
        slots.retry_after(min(got, api_settings().max_wait_seconds)),
    )


def _job_of(message_id: uuid.UUID) -> tuple[uuid.UUID | None, str | None]:
    """The last job answering the message and its status, if there is one yet."""
    job_ids = jobs.jobs_for_message(message_id)
    if not job_ids:
        return None, None
    return job_ids[-1], jobs.get_job(job_ids[-1]).status


def _post(conversation_id: uuid.UUID, body: MessageIn, key: str | None) -> PostedMessage:
    # Two posts with one key cannot both insert: post_message locks the conversation row
    # before it looks the key up, so the second sees the first's message.
    try:
        return turn.post_message(conversation_id, body.author_id, body.content, key)
    except Conflict as exc:
        if key is None:
            raise
        raise IdempotencyKeyReused(key) from exc


@router.get("/{conversation_id}/messages", response_model=MessagePage)
def list_messages(
    conversation_id: uuid.UUID,
    who: Caller,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> MessagePage:
    """Messages with seq > `after_seq`, oldest first, one page."""
    own_conversation(who, conversation_id)
    items = conversations.list_messages(conversation_id, after_seq=after_seq, limit=limit)
    return MessagePage(items=items, next_after_seq=items[-1].seq if len(items) == limit else None)
