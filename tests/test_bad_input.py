"""Bad input and a security sweep: malformed and oversized payloads get a clear error and
write nothing; odd Unicode and SQL-looking text are stored verbatim; a runaway or broken
provider is contained; no API key or message body reaches the broker or the logs."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from agentq import errors, turn
from agentq.client import Client
from agentq.runtime.embedded import EmbeddedRedis, stored_values
from agentq.store.migrate import upgrade
from agentq.store.models import Event, Job, Message
from agentq.store.session import reader
from agentq.testing.fake_llm import FakeLLMServer
from agentq.testing.stack import Stack
from tests.conftest import FAST, apply_env, create_pg_database, drop_pg_database
from tests.helpers import make_dm, wait_until
from tests.profile_support import profiles_json

SECRET = "sk-sweep-SECRET-5d1e0b7a93c2"
#: every body posted here carries it, so that it can be looked for where none belong
MARKER = "zebra-quartz-body"
NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}
MAX_REPLY = 1000


pytestmark = pytest.mark.usefixtures("restored_env")


@pytest.fixture(scope="module")
def store(module_db: str, module_redis: EmbeddedRedis, runaway: str) -> dict[str, str]:
    # No worker listens on the module's Redis unless a test starts one: the tests play
    # the tasks' part.
    return {
        **FAST,
        "AGENTQ_DATABASE_URL": module_db,
        "AGENTQ_REDIS_URL": module_redis.url,
        "LLM_API_KEY": SECRET,
        "AGENTQ_MAX_REPLY_LENGTH": str(MAX_REPLY),
        "LLM_MAX_RETRIES": "1",
        "AGENTQ_MAX_ATTEMPTS": "2",
        # the operator's profiles for the runaway server's two answers
        "AGENTQ_MODEL_PROFILES": profiles_json(
            huge={"endpoint": f"{runaway}/huge/v1"}, dirty={"endpoint": f"{runaway}/dirty/v1"}
        ),
    }


@pytest.fixture
def client(store: dict[str, str]) -> Client:
    apply_env(store)
    return Client()


def _rows() -> tuple[int, int]:
    with reader() as s:
        return (
            int(s.scalar(select(func.count()).select_from(Message)) or 0),
            int(s.scalar(select(func.count()).select_from(Event)) or 0),
        )


# -- producer input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "error", "field"),
    [
        ("x" * 32_001, errors.ContentTooLong, "content"),
        ("x" * 2_000_000, errors.ContentTooLong, "content"),
        ("", errors.EmptyContent, "content"),
        (" \n\t ", errors.EmptyContent, "content"),
        (b"bytes", errors.InvalidInput, "content"),
        (None, errors.InvalidInput, "content"),
        ({"text": "hi"}, errors.InvalidInput, "content"),
        ("nul \x00 inside", errors.InvalidInput, "content"),
        ("half an emoji \ud83d", errors.InvalidInput, "content"),
        ("\udfff lone low surrogate", errors.InvalidInput, "content"),
    ],
)
def test_malformed_content_gets_a_clear_error_and_writes_nothing(
    client: Client, content: Any, error: type[Exception], field: str
) -> None:
    conv, user, _ = make_dm(client, settings=NOW)
    before = _rows()
    with pytest.raises(error) as raised:
        client.post_message(conv.id, user.id, content)
    assert raised.value.field == field  # type: ignore[attr-defined]
    assert field in str(raised.value)
    assert _rows() == before


def test_content_at_the_limit_is_accepted_and_one_more_is_not(client: Client) -> None:
    conv, user, _ = make_dm(client, settings=NOW)
    limit = client.settings.max_content_length
    assert client.post_message(conv.id, user.id, "é" * limit).seq == 1
    with pytest.raises(errors.ContentTooLong, match=str(limit + 1)):
        client.post_message(conv.id, user.id, "é" * (limit + 1))


def test_bad_ids_and_keys_get_clear_errors(client: Client) -> None:
    conv, user, _ = make_dm(client, settings=NOW)
    other, stranger, _ = make_dm(client, settings=NOW)
    before = _rows()
    with pytest.raises(errors.ConversationNotFound, match="nope"):
        client.post_message("nope", user.id, "hi")
    with pytest.raises(errors.ConversationNotFound):
        client.post_message(uuid.uuid4(), user.id, "hi")
    with pytest.raises(errors.NotAParticipant):
        client.post_message(conv.id, stranger.id, "hi")  # a participant of another conversation
    with pytest.raises(errors.NotAParticipant):
        client.post_message(conv.id, "'; DROP TABLE participants; --", "hi")
    with pytest.raises(errors.InvalidInput, match="idempotency_key"):
        client.post_message(conv.id, user.id, "hi", idempotency_key="k" * 201)
    with pytest.raises(errors.InvalidInput, match="idempotency_key"):
        client.post_message(conv.id, user.id, "hi", idempotency_key="")
    with pytest.raises(errors.InvalidInput, match="idempotency_key"):
        client.post_message(conv.id, user.id, "hi", idempotency_key="\ud800")
    assert _rows() == before
    del other


UNICODE = [
    "emoji 👩🏽‍💻🚀🇸🇪 and a family 👨‍👩‍👧‍👦",
    "RTL: مرحبا بالعالم — שלום עולם \u200f(mark)\u202e reversed\u202c",
    "combining: e\u0301 a\u0308\u0323 Z\u0335\u0336\u0337 ﷽",
    "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱 and a BOM \ufeff and zero width \u200b\u200d",
    "control chars \x01\x1b[31mred\x1b[0m \u2028 line separator \r\n crlf",
]


def test_unicode_edge_cases_are_stored_verbatim(client: Client) -> None:
    conv, user, _ = make_dm(client, settings=NOW)
    for text in UNICODE:
        client.post_message(conv.id, user.id, text)
    stored = [m.content for m in client.list_messages(conv.id)]
    assert stored == UNICODE


SQLISH = [
    "'; DROP TABLE messages; --",
    "Robert'); DELETE FROM jobs WHERE ('1'='1",
    '" OR 1=1 --',
    "%s %(content)s {0} $1 :content ? \\' \\\\",
    "1; UPDATE conversations SET last_seq = 0; SELECT pg_sleep(5);",
]


def test_sql_looking_content_is_stored_verbatim(client: Client) -> None:
    conv, user, _ = make_dm(client, settings=NOW)
    for i, text in enumerate(SQLISH):
        client.post_message(conv.id, user.id, text, idempotency_key=f"{text}-{i}")
    assert [m.content for m in client.list_messages(conv.id)] == SQLISH
    with reader() as s:  # the tables are all still there, the seqs untouched
        assert s.scalar(
            select(func.max(Message.seq)).where(Message.conversation_id == conv.id)
        ) == len(SQLISH)


# -- provider output ---------------------------------------------------------------------------


class _Runaway(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose replies are enormous or full of bad text."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content = {
            "/huge/v1/chat/completions": "all work and no play " * 50_000,  # ~1 MB
            "/dirty/v1/chat/completions": "nul \x00 and half an emoji \ud83d then more",
        }.get(self.path, "ok")
        body = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "runaway",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def runaway() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Runaway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run_in_process(conv_id: uuid.UUID, *, until: float = 30.0) -> Job:
    """Play the worker's part: dispatch, then claim and run attempts until the job ends."""
    turn.dispatch_due(conv_id)
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        claim = turn.advance(conv_id)
        if claim is not None:
            turn.run_job(claim.job_id, claim.token)
        with reader() as s:
            job = s.scalar(select(Job).where(Job.conversation_id == conv_id))
        if job is not None and job.status in ("completed", "failed"):
            return job
        time.sleep(0.2)  # a delayed retry waits its backoff
    raise AssertionError("the job never ended")


def test_enormous_llm_reply_is_stored_cut_to_the_maximum(client: Client, runaway: str) -> None:
    conv, user, _ = make_dm(client, settings=NOW, model_config={"profile": "huge"})
    client.post_message(conv.id, user.id, "tell me everything")
    job = _run_in_process(conv.id)
    assert job.status == "completed"
    assert job.result is not None and job.result["truncated"] is True
    (reply,) = [m for m in client.list_messages(conv.id) if m.role == "assistant"]
    assert len(reply.content) == MAX_REPLY
    assert reply.content.startswith("all work and no play")


def test_llm_reply_with_nul_and_lone_surrogates_is_stored_cleaned(
    client: Client, runaway: str
) -> None:
    conv, user, _ = make_dm(client, settings=NOW, model_config={"profile": "dirty"})
    client.post_message(conv.id, user.id, "say something odd")
    job = _run_in_process(conv.id)
    assert job.status == "completed"
    (reply,) = [m for m in client.list_messages(conv.id) if m.role == "assistant"]
    assert reply.content == "nul  and half an emoji ? then more"


def test_provider_returning_invalid_json_fails_the_job_visibly(client: Client) -> None:
    with FakeLLMServer(latency=0.01) as llm:
        llm.control(script=["badjson"] * 20)
        apply_env({"AGENTQ_MODEL_PROFILES": profiles_json(badjson={"endpoint": llm.url})})
        conv, user, _ = make_dm(client, settings=NOW, model_config={"profile": "badjson"})
        client.post_message(conv.id, user.id, "hello?")
        job = _run_in_process(conv.id)
    assert job.status == "failed"
    assert "JSON" in (job.failure_reason or "")
    notes = [m.content for m in client.list_messages(conv.id) if m.role == "system"]
    assert len(notes) == 1 and "could not respond" in notes[0] and "JSON" in notes[0]


# -- secrets and bodies stay out of the broker and the logs ------------------------------------


class _Tap(threading.Thread):
    """Everything published on a Redis (task events, pub/sub) while it runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.psubscribe("*")
        self.seen: list[bytes] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.pubsub.get_message(timeout=0.2)
            if msg and isinstance(msg.get("data"), bytes):
                self.seen.append(msg["data"])


@pytest.mark.integration
def test_no_api_key_or_body_in_task_messages_or_worker_logs(tmp_path: Path) -> None:
    url = create_pg_database()
    upgrade(url)
    try:
        with (
            EmbeddedRedis() as server,
            FakeLLMServer(latency=0.3, api_key=SECRET) as llm,
            FakeLLMServer(latency=0.01, api_key="another-key") as wrong,
        ):
            env = {
                **FAST,
                "AGENTQ_DATABASE_URL": url,
                "AGENTQ_REDIS_URL": server.url,
                "LLM_ENDPOINT": llm.url,
                "LLM_API_KEY": SECRET,
                "AGENTQ_MAX_ATTEMPTS": "1",
                "LLM_MAX_RETRIES": "0",
                # an operator's profile whose server rejects the key
                "AGENTQ_MODEL_PROFILES": profiles_json(wrong={"endpoint": wrong.url}),
            }
            apply_env(env)
            client = Client()
            tap = _Tap(server.url)
            tap.start()
            snapshots: list[bytes] = []
            with Stack(env, log_dir=tmp_path / "logs") as stack:
                stack.start_worker(concurrency=4)
                stack.start_reconciler(interval=0.5)
                convs = [make_dm(client, settings=NOW) for _ in range(3)]
                # One agent's provider rejects the key, and echoes it in its error body.
                rejected = make_dm(client, settings=NOW, model_config={"profile": "wrong"})
                for conv, user, _ in [*convs, rejected]:
                    client.post_message(conv.id, user.id, f"{MARKER} my password is hunter2")
                for _ in range(10):
                    snapshots += stored_values(server.url)
                    time.sleep(0.1)
                for conv, _, _ in convs:
                    wait_until(
                        lambda c=conv: [
                            m for m in client.list_messages(c.id) if m.role == "assistant"
                        ],
                        timeout=60,
                    )
                failed = wait_until(
                    lambda: [m for m in client.list_messages(rejected[0].id) if m.role == "system"],
                    timeout=60,
                )
            tap.stop.set()
            tap.join()
        # The provider did get the key (the calls succeeded), and nothing else did.
        assert llm_ok(convs, client)
        assert "could not respond" in failed[0].content and "401" in failed[0].content
        assert SECRET not in failed[0].content
        with reader() as s:
            reasons = [j.failure_reason or "" for j in s.scalars(select(Job))]
        assert all(SECRET not in r for r in reasons)
        assert tap.seen, "the tap saw no task events"
        for blob in [*tap.seen, *snapshots]:
            assert SECRET.encode() not in blob
            # Streamed reply text is the one body that travels through Redis, on purpose:
            # live `agent.token` records on the conversation's own channel, for its
            # authorized subscribers (AGENTQ_STREAM_TOKENS=false keeps them off).
            if b'"type": "agent.token"' not in blob:
                assert MARKER.encode() not in blob
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
        assert "agentq.run_job" in logs  # the workers did log their tasks
        assert SECRET not in logs
        assert MARKER not in logs
    finally:
        drop_pg_database(url)


def llm_ok(convs: list[Any], client: Client) -> bool:
    return all(
        any(m.role == "assistant" for m in client.list_messages(conv.id)) for conv, _, _ in convs
    )
