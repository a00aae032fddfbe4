"""The event feed in commit order: a reader paging with the cursor while writers commit
concurrently, in transactions held open on purpose, gets every event exactly once."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from agentq.errors import InvalidInput
from agentq.events import MessageCreated
from agentq.runtime import bus
from agentq.store import outbox
from agentq.store.session import transaction
from tests.api_support import api_server, cli_create_key
from tests.conftest import apply_env
from tests.helpers import wait_until

WRITERS = 4
EVENTS = 600


def write_concurrently(
    conversation_id: uuid.UUID,
    url: str,
    writers: int = WRITERS,
    events: int = EVENTS,
    written: list[int] | None = None,
) -> tuple[list[threading.Thread], list[BaseException]]:
    """`writers` threads storing `events` events of the conversation in all, 1 to 3 a
    transaction, each transaction held open 0-40 ms after its insert (pg_sleep), so
    that ids are taken in one order and committed in another. With `written`, the
    events are also published after their commit (as agentq does) and their ids kept."""
    errors: list[BaseException] = []
    per_writer = events // writers

    def write(n: int) -> None:
        rnd = random.Random(n)
        done = 0
        try:
            while done < per_writer:
                batch = min(rnd.randint(1, 3), per_writer - done)
                with transaction(url) as tx:
                    rows = outbox.insert_events(
                        tx,
                        [
                            MessageCreated(
                                conversation_id=conversation_id,
                                message_id=uuid.uuid4(),
                                seq=n * per_writer + done + i,
                                role="user",
                            )
                            for i in range(batch)
                        ],
                    )
                    tx.execute(text("SELECT pg_sleep(:s)"), {"s": rnd.uniform(0, 0.04)})
                if written is not None:
                    written.extend(r.id for r in rows)
                    bus.publish(rows)
                done += batch
                time.sleep(rnd.uniform(0, 0.005))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,), daemon=True) for n in range(writers)]
    for t in threads:
        t.start()
    return threads, errors


def page_until_done(
    read_page: Callable[[str], tuple[list[dict[str, Any]], str]],
    threads: list[threading.Thread],
    mine: Callable[[dict[str, Any]], bool],
    expected: int,
    timeout: float = 120,
) -> list[int]:
    """Page with the cursor every few ms while the writers run, then drain: the ids of
    the records `mine` keeps, in the order received."""
    got: list[int] = []
    cursor = "0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        writing = any(t.is_alive() for t in threads)
        records, cursor = read_page(cursor)
        got += [r["id"] for r in records if mine(r)]
        if not writing and not records and len(got) >= expected:
            break
        if not records:
            time.sleep(0.003)
    return got


def assert_exactly_once(got: list[int], expected: int) -> None:
    repeated = [i for i, n in Counter(got).items() if n > 1]
    assert not repeated, f"{len(repeated)} events repeated"
    assert len(got) == expected, f"{expected - len(got)} of {expected} events missed"


@pytest.fixture
def pg(pg_url: str, base_env: dict[str, str], restored_env: None) -> str:
    apply_env({**base_env, "AGENTQ_DATABASE_URL": pg_url})
    return pg_url


def test_paging_reader_gets_every_event_once_with_concurrent_writers(pg: str) -> None:
    conv = uuid.uuid4()
    threads, errors = write_concurrently(conv, pg)

    def read_page(cursor: str) -> tuple[list[dict[str, Any]], str]:
        page = bus.read_feed(after=cursor, limit=50)
        return page, page[-1]["cursor"] if page else cursor

    got = page_until_done(read_page, threads, lambda r: r["conversation_id"] == str(conv), EVENTS)
    for t in threads:
        t.join()
    assert not errors, errors
    assert_exactly_once(got, EVENTS)


def test_a_conversations_feed_is_in_commit_order_too(pg: str) -> None:
    conv = uuid.uuid4()
    threads, errors = write_concurrently(conv, pg, events=200)

    def read_page(cursor: str) -> tuple[list[dict[str, Any]], str]:
        page = bus.read_feed(after=cursor, limit=20, conversation_id=conv)
        return page, page[-1]["cursor"] if page else cursor

    got = page_until_done(read_page, threads, lambda r: True, 200)
    assert not errors, errors
    assert_exactly_once(got, 200)
    # the feed's end is where a live stream starts: nothing of the conversation after it
    assert bus.read_feed(after=bus.feed_tail(conv), conversation_id=conv) == []


def test_an_open_transactions_events_are_held_back_until_it_ends(pg: str) -> None:
    conv = uuid.uuid4()
    event = MessageCreated(conversation_id=conv, message_id=uuid.uuid4(), seq=1, role="user")
    start = bus.feed_tail(conv)
    with transaction(pg) as slow:
        outbox.insert_events(slow, [event])
        with transaction(pg) as fast:  # a higher id, committed first
            outbox.insert_events(fast, [event.model_copy(update={"seq": 2})])
        # the fast one is committed, but a reader must not pass it while slow is open
        assert bus.read_feed(after=start, conversation_id=conv) == []
    # once every older transaction on the server has ended (other tests' too)
    page = wait_until(lambda: bus.read_feed(after=start, conversation_id=conv), what="the feed")
    assert [r["payload"]["seq"] for r in page] == [1, 2]


@pytest.mark.parametrize("cursor", ["", "1", "42", "abc", "MC4w", "MTIzLjQ1Ng==", "-1", "0.5"])
def test_a_malformed_cursor_is_refused_naming_the_field(pg: str, cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        bus.read_feed(after=cursor)
    assert caught.value.field == "after"


def test_sqlite_pages_by_id(sqlite_url: str, base_env: dict[str, str], restored_env: None) -> None:
    apply_env({**base_env, "AGENTQ_DATABASE_URL": sqlite_url})
    conv = uuid.uuid4()
    with transaction(sqlite_url) as tx:
        outbox.insert_events(
            tx,
            [
                MessageCreated(conversation_id=conv, message_id=uuid.uuid4(), seq=i, role="user")
                for i in range(7)
            ],
        )
    got: list[int] = []
    cursor = "0"
    while page := bus.read_feed(after=cursor, limit=3, conversation_id=conv):
        got += [r["payload"]["seq"] for r in page]
        cursor = page[-1]["cursor"]
    assert got == list(range(7))
    assert bus.read_feed(after=bus.feed_tail(conv), conversation_id=conv) == []


# --- the same over real HTTP -----------------------------------------------------------------


@pytest.fixture
def api(pg: str, base_env: dict[str, str], tmp_path: Path) -> Iterator[httpx.Client]:
    env = {**base_env, "AGENTQ_DATABASE_URL": pg}
    key = cli_create_key(env)
    with (
        api_server(env, tmp_path) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http,
    ):
        yield http


def test_http_feed_reader_gets_every_event_once_with_concurrent_writers(
    pg: str, api: httpx.Client
) -> None:
    created = api.post("/v1/conversations", json={"kind": "dm", "title": "feed"})
    assert created.status_code == 201, created.text
    conv = created.json()["id"]
    threads, errors = write_concurrently(uuid.UUID(conv), pg)

    def read_page(cursor: str) -> tuple[list[dict[str, Any]], str]:
        answer = api.get("/v1/events", params={"after": cursor, "limit": 50})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        return page["items"], page["next_after"]

    def mine(r: dict[str, Any]) -> bool:
        return r["conversation_id"] == conv and r["type"] == "message.created"

    got = page_until_done(read_page, threads, mine, EVENTS)
    assert not errors, errors
    assert_exactly_once(got, EVENTS)

    # cursors are opaque: no event id in them as such (pages of one may be empty: they
    # move past other tenants' agent events)
    cursor = "0"
    for _ in range(10_000):
        first = api.get("/v1/events", params={"after": cursor, "limit": 1}).json()
        if first["items"]:
            break
        cursor = first["next_after"]
    assert first["next_after"] != str(first["items"][0]["id"])


@pytest.mark.parametrize("cursor", ["", "17", "not a cursor", "MC4w", "x" * 60])
def test_http_malformed_cursor_is_422_naming_the_field(api: httpx.Client, cursor: str) -> None:
    answer = api.get("/v1/events", params={"after": cursor})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "after"


@dataclass
class Stream:
    """An SSE reader in a thread that keeps `Last-Event-ID` as a browser does (`id:`-only
    blocks included): the stored events' ids land in `ids`."""

    http: httpx.Client
    path: str
    last_id: str
    ids: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        headers = {**self.http.headers, "Last-Event-ID": self.last_id}
        with (
            httpx.Client(base_url=self.http.base_url, timeout=httpx.Timeout(5, read=30)) as c,
            c.stream("GET", self.path, headers=headers) as r,
        ):
            assert r.status_code == 200
            block: dict[str, str] = {}
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line:
                    if not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        block[name] = value
                    continue
                if "id" in block:
                    self.last_id = block["id"]
                if "data" in block:
                    self.ids.append(json.loads(block["data"])["id"])
                block = {}

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(35)


def test_sse_replay_and_resume_with_last_event_id_miss_nothing(pg: str, api: httpx.Client) -> None:
    created = api.post("/v1/conversations", json={"kind": "dm", "title": "sse"})
    assert created.status_code == 201, created.text
    conv = created.json()["id"]
    path = f"/v1/conversations/{conv}/stream"
    written: list[int] = []
    threads, errors = write_concurrently(uuid.UUID(conv), pg, written=written)
    first = Stream(api, path, "0").start()
    wait_until(lambda: len(first.ids) >= EVENTS // 4, timeout=60, what="a quarter")
    first.stop()
    # resumed where the first stream's Last-Event-ID says, while the writers go on
    second = Stream(api, path, first.last_id).start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(written) == EVENTS
    wait_until(
        lambda: set(written) <= set(first.ids) | set(second.ids), timeout=60, what="every event"
    )
    second.stop()
    for stream in (first, second):
        repeated = [i for i, n in Counter(stream.ids).items() if n > 1]
        assert not repeated, f"{len(repeated)} events repeated in one stream"
    # a replay from the start, once all is written: every event once, in feed order
    third = Stream(api, path, "0").start()
    wait_until(lambda: len(third.ids) >= EVENTS, timeout=60, what="the replay")
    third.stop()
    feed: list[int] = []
    cursor = "0"
    while page := bus.read_feed(after=cursor, limit=500, conversation_id=uuid.UUID(conv)):
        feed += [r["id"] for r in page]
        cursor = page[-1]["cursor"]
    mine = set(written)
    assert [i for i in third.ids if i in mine] == [i for i in feed if i in mine]
    assert sorted(i for i in third.ids if i in mine) == sorted(written)
