"""The message service: seq, the outbox event, validation, idempotency (SQLite and PG)."""

from __future__ import annotations

import uuid

import pytest

from agentq import errors
from agentq.client import Client
from agentq.store.models import Event, Message
from tests.helpers import count, events_of, make_dm


@pytest.fixture
def client(db: str) -> Client:
    return Client()


def test_message_gets_next_seq_and_its_event_in_one_transaction(client: Client) -> None:
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    first = client.post_message(conv.id, user.id, "one")
    second = client.post_message(conv.id, user.id, "two")
    assert (first.seq, second.seq) == (1, 2)
    created = events_of(conv.id, "message.created")
    assert [e.payload["message_id"] for e in created] == [str(first.id), str(second.id)]
    assert all("content" not in e.payload for e in created)


@pytest.mark.parametrize(
    ("content", "error", "field"),
    [
        ("", errors.EmptyContent, "content"),
        ("   \n\t", errors.EmptyContent, "content"),
        ("x" * 32_001, errors.ContentTooLong, "content"),
        ("nul\x00byte", errors.InvalidInput, "content"),
        (42, errors.InvalidInput, "content"),
    ],
)
def test_bad_content_is_refused_and_nothing_written(
    client: Client, content: object, error: type[errors.InvalidInput], field: str
) -> None:
    conv, user, _ = make_dm(client)
    before = (count(Message), count(Event))
    with pytest.raises(error) as info:
        client.post_message(conv.id, user.id, content)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert (count(Message), count(Event)) == before


def test_too_long_content_names_length_and_limit(client: Client) -> None:
    conv, user, _ = make_dm(client)
    with pytest.raises(errors.ContentTooLong, match="32001 characters long; the limit is 32000"):
        client.post_message(conv.id, user.id, "x" * 32_001)


def test_unknown_conversation_is_named(client: Client) -> None:
    missing = uuid.uuid4()
    _, user, _ = make_dm(client)
    before = count(Message)
    with pytest.raises(errors.ConversationNotFound, match=str(missing)):
        client.post_message(missing, user.id, "hello")
    with pytest.raises(errors.ConversationNotFound, match="not-a-uuid"):
        client.post_message("not-a-uuid", user.id, "hello")
    assert count(Message) == before


def test_author_who_is_not_a_participant_is_refused(client: Client) -> None:
    conv, _, _ = make_dm(client)
    other_conv, stranger, _ = make_dm(client)
    before = count(Message)
    with pytest.raises(errors.NotAParticipant) as info:
        client.post_message(conv.id, stranger.id, "let me in")
    assert str(stranger.id) in str(info.value) and str(conv.id) in str(info.value)
    assert count(Message) == before


def test_same_idempotency_key_and_body_posts_once(client: Client) -> None:
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    a = client.post_message(conv.id, user.id, "pay", idempotency_key="k-1")
    b = client.post_message(conv.id, user.id, "pay", idempotency_key="k-1")
    assert a.id == b.id and b.duplicate and not a.duplicate
    assert count(Message, Message.conversation_id == conv.id) == 1


def test_same_idempotency_key_other_body_is_a_conflict(client: Client) -> None:
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    client.post_message(conv.id, user.id, "pay 10", idempotency_key="k-2")
    with pytest.raises(errors.Conflict, match="k-2"):
        client.post_message(conv.id, user.id, "pay 20", idempotency_key="k-2")
    assert count(Message, Message.conversation_id == conv.id) == 1


def test_unknown_conversation_setting_is_named(client: Client) -> None:
    with pytest.raises(errors.InvalidInput, match="settings.debounce"):
        client.create_conversation("dm", settings={"debounce": 1})
    with pytest.raises(errors.InvalidInput, match="max_wait_seconds"):
        client.create_conversation("dm", settings={"debounce_seconds": 5, "max_wait_seconds": 1})


def test_agent_config_refuses_secrets(client: Client) -> None:
    with pytest.raises(errors.InvalidInput, match="model_config.api_key"):
        client.create_agent("leaky", model_config={"api_key": "sk-nope"})
    with pytest.raises(errors.InvalidInput, match="unknown provider 'nope'"):
        client.create_agent("odd", provider="nope")


def test_dm_takes_one_agent(client: Client) -> None:
    conv, _, _ = make_dm(client)
    other = client.create_agent(f"extra-{uuid.uuid4().hex[:6]}")
    with pytest.raises(errors.Conflict, match="DM"):
        client.add_participant(conv.id, agent=other.id)


def test_paging_bounds_are_named(client: Client) -> None:
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 60, "max_wait_seconds": 60})
    with pytest.raises(errors.InvalidInput, match="after_seq"):
        client.list_messages(conv.id, after_seq=2**31)
    with pytest.raises(errors.InvalidInput, match="limit"):
        client.list_messages(conv.id, limit=0)


def test_waiting_for_an_unknown_message_is_named(client: Client) -> None:
    missing = uuid.uuid4()
    with pytest.raises(errors.NotFound, match=f"message {missing} not found"):
        client.wait_for_reply(missing, timeout=1)


def test_debounce_window_is_bounded(client: Client) -> None:
    with pytest.raises(errors.InvalidInput, match="settings.max_wait_seconds: must be <= 600"):
        client.create_conversation("dm", settings={"max_wait_seconds": 1e300})
