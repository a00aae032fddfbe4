"""The event feed misses and repeats nothing at scale (issue 15, "what it must show" 3).

    .venv/bin/python ops/scripts/feed_completeness.py                  # 8 writers, 5,000 events
    .venv/bin/python ops/scripts/feed_completeness.py --mode post      # through Client.post_message
    .venv/bin/python ops/scripts/feed_completeness.py --writers 2 --events 100 --json  # smoke

`--writers` threads write `--events` events of one conversation on PostgreSQL while two
readers follow the feed:

- writers, `--mode hold` (default, as tests/test_feed_order.py does): each transaction
  stores 1 to 3 `message.created` events through the outbox and stays open a random 0 to
  `--hold-ms` ms after its insert (pg_sleep), so that ids are taken in one order and
  committed in another; after the commit the events are published, as agentq does.
  `--mode post`: each writer posts messages through `agentq.Client.post_message` (the
  conversation row lock serializes them: the realistic case, not the adversarial one).
- the paging reader pages `agentq.Client.events(since=cursor)` every `--every-ms` ms
  (at once while pages come back full);
- the SSE reader follows `GET /v1/conversations/{id}/stream` of the real API under uvicorn
  (started here, `agentq api`), and reconnects with `Last-Event-ID` (the last `id:` it
  saw, as a browser does) every `--reconnect-every` seconds while the writers run.

Each reader keeps the event ids of the conversation's `message.created` events; once the
writers are done, both drain. Against the events stored (read from the table), it prints
per reader: received, missed, repeated (an event delivered more than once; for SSE also
within one connection), reconnects; and events written and the writers' duration.
Exit 1 if any reader missed or repeated an event.

A fresh database on a PostgreSQL server of the run's own (initdb, like backlog.py), or on
`--pg-admin URL`'s server. The feed waits for every older transaction on the *server*, so
other work on a shared server slows the readers (never makes them miss). Figures go to
stdout (a table, or `--json`); progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: find `agentq`, `ops` and `tests` here
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ops.scripts.backlog import BASE_ENV, private_postgres, quiet_and_interruptible, say  # noqa: E402

TENANT = "feed-completeness"


@dataclass
class Reader:
    """What one reader got: event ids in the order received."""

    name: str
    ids: list[int] = field(default_factory=list)
    connections: int = 0
    #: events delivered twice within one SSE connection
    repeated_in_connection: int = 0
    errors: list[str] = field(default_factory=list)

    def figures(self, written: set[int]) -> dict[str, Any]:
        got = Counter(self.ids)
        return {
            "reader": self.name,
            "received": len(self.ids),
            "distinct": len(set(got)),
            "missed": len(written - set(got)),
            "repeated": sum(n - 1 for n in got.values() if n > 1),
            "repeated_in_connection": self.repeated_in_connection,
            "unknown": len(set(got) - written),
            "connections": self.connections,
            "errors": self.errors[:5],
        }


# --- writers ---------------------------------------------------------------------------


def write_held(conv: uuid.UUID, url: str, n: int, count: int, hold_ms: float) -> None:
    """`count` events of `conv`, 1-3 a transaction held open 0-`hold_ms` ms after its
    insert, each published after its commit."""
    from sqlalchemy import text

    from agentq.events import MessageCreated
    from agentq.runtime import bus
    from agentq.store import outbox
    from agentq.store.session import transaction

    rnd = random.Random(n)
    done = 0
    while done < count:
        batch = min(rnd.randint(1, 3), count - done)
        events = [
            MessageCreated(
                conversation_id=conv, message_id=uuid.uuid4(), seq=n * count + done + i, role="user"
            )
            for i in range(batch)
        ]
        with transaction(url) as tx:
            rows = outbox.insert_events(tx, events)
            tx.execute(text("SELECT pg_sleep(:s)"), {"s": rnd.uniform(0, hold_ms / 1000)})
        bus.publish(rows)
        done += batch
        time.sleep(rnd.uniform(0, 0.005))


def write_posts(client: Any, conv: uuid.UUID, author: uuid.UUID, n: int, count: int) -> None:
    """`count` messages posted by `author` through the Client (agentq's own entry point)."""
    for i in range(count):
        client.post_message(conv, author, f"writer {n} message {i}")


def run_writers(args: argparse.Namespace, client: Any, conv: Any, user: Any, url: str) -> float:
    """Start the writers; returns when all are done: their wall time."""
    per, extra = divmod(args.events, args.writers)
    counts = [per + (1 if n < extra else 0) for n in range(args.writers)]
    failures: list[BaseException] = []

    def one(n: int) -> None:
        try:
            if args.mode == "hold":
                write_held(conv.id, url, n, counts[n], args.hold_ms)
            else:
                write_posts(client, conv.id, user.id, n, counts[n])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(args.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} writers failed: {failures[0]!r}")
    return time.monotonic() - start


# --- readers ---------------------------------------------------------------------------


def page(
    client: Any, conv: str, out: Reader, stop: threading.Event, args: argparse.Namespace
) -> None:
    """Page `Client.events` with the cursor until `stop`, then drain to the end."""
    cursor: str | int = 0
    out.connections = 1
    while True:
        stopping = stop.is_set()
        try:
            records = client.events(since=cursor, limit=args.page)
        except Exception as exc:  # noqa: BLE001 - counted, the reader goes on
            out.errors.append(repr(exc))
            time.sleep(0.1)
            continue
        if records:
            cursor = records[-1]["cursor"]
            out.ids += [
                r["id"]
                for r in records
                if r["conversation_id"] == conv and r["type"] == "message.created"
            ]
        elif stopping:
            return
        if len(records) < args.page:
            time.sleep(args.every_ms / 1000)


def follow(url: str, key: str, conv: str, out: Reader, stop: threading.Event, every: float) -> None:
    """Follow the conversation's SSE stream, reconnecting with Last-Event-ID every `every`
    seconds until `stop`; then stay until the stream has been quiet for 3 s."""
    import httpx

    last_id = "0"
    path = f"/v1/conversations/{conv}/stream"
    quiet = 3.0
    while True:
        stopping = stop.is_set()
        until = time.monotonic() + (quiet if stopping else every)
        headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": last_id}
        seen: set[int] = set()
        got_any = False
        try:
            with (
                httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=quiet)) as http,
                http.stream("GET", path, headers=headers) as r,
            ):
                if r.status_code != 200:
                    out.errors.append(f"HTTP {r.status_code}")
                    time.sleep(0.5)
                    continue
                out.connections += 1
                block: dict[str, str] = {}
                for line in r.iter_lines():
                    if line:
                        if not line.startswith(":"):
                            name, _, value = line.partition(": ")
                            block[name] = value
                    else:
                        if "id" in block:
                            last_id = block["id"]
                        if "data" in block:
                            rec = json.loads(block["data"])
                            if rec.get("type") == "message.created":
                                got_any = True
                                if rec["id"] in seen:
                                    out.repeated_in_connection += 1
                                seen.add(rec["id"])
                                out.ids.append(rec["id"])
                        block = {}
                    if time.monotonic() >= until:
                        break
        except httpx.ReadTimeout:
            pass  # quiet for `quiet` seconds
        except httpx.HTTPError as exc:
            out.errors.append(repr(exc))
            time.sleep(0.2)
            continue
        if stopping and not got_any:
            return


# --- the run ---------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin: str) -> Iterator[str]:
    from agentq.store.migrate import upgrade
    from agentq.store.scratch import create_database, drop_database

    url = create_database(admin, prefix="agentq_scripts")
    try:
        upgrade(url)
        yield url
    finally:
        with contextlib.suppress(Exception):
            from agentq.store.session import dispose_engines

            dispose_engines()
            drop_database(url, admin)


def stored_ids(conv: uuid.UUID) -> set[int]:
    from sqlalchemy import select

    from agentq.store.models import Event
    from agentq.store.session import reader

    with reader() as s:
        query = select(Event.id).where(
            Event.conversation_id == conv, Event.type == "message.created"
        )
        return set(s.scalars(query))


def run(args: argparse.Namespace, admin: str) -> dict[str, Any]:
    from agentq.client import Client
    from agentq.ops.keys import create_key
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.testing.stack import use_env
    from tests.api_support import api_server

    saved = dict(os.environ)
    logs = Path(tempfile.mkdtemp(prefix="agentq-feed-"))
    try:
        with fresh_database(admin) as url, EmbeddedRedis() as redis:
            env = {**BASE_ENV, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": redis.url}
            use_env(env)
            key, _ = create_key("feed-reader", TENANT)
            client = Client(tenant=TENANT)
            conv = client.create_conversation("channel", title="feed completeness")
            user = client.add_participant(conv.id, user_id="writer")
            with api_server(env, logs) as server:
                say(
                    f"API at {server.url}; {args.writers} writers, {args.events} events ({args.mode})"
                )
                stop = threading.Event()
                paging, sse = Reader("paging Client.events"), Reader("SSE Last-Event-ID")
                readers = [
                    threading.Thread(target=page, args=(client, str(conv.id), paging, stop, args)),
                    threading.Thread(
                        target=follow,
                        args=(server.url, key, str(conv.id), sse, stop, args.reconnect_every),
                    ),
                ]
                for t in readers:
                    t.start()
                start = time.monotonic()
                written_in = run_writers(args, client, conv, user, url)
                say(f"writers done in {written_in:.1f} s; draining")
                stop.set()
                for t in readers:
                    t.join(args.timeout)
                total = time.monotonic() - start
            written = stored_ids(conv.id)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {
        "mode": args.mode,
        "writers": args.writers,
        "events_written": len(written),
        "write_seconds": round(written_in, 2),
        "total_seconds": round(total, 2),
        "readers": [r.figures(written) for r in (paging, sse)],
    }


def report(out: dict[str, Any]) -> str:
    lines = [
        f"feed completeness: {out['writers']} writers ({out['mode']}), "
        f"{out['events_written']} events written in {out['write_seconds']} s "
        f"({out['events_written'] / max(out['write_seconds'], 1e-9):.0f}/s); "
        f"readers done after {out['total_seconds']} s",
        f"{'reader':<22} {'received':>9} {'distinct':>9} {'missed':>7} {'repeated':>9} "
        f"{'(in one conn)':>13} {'connections':>12}",
    ]
    for r in out["readers"]:
        lines.append(
            f"{r['reader']:<22} {r['received']:>9} {r['distinct']:>9} {r['missed']:>7} "
            f"{r['repeated']:>9} {r['repeated_in_connection']:>13} {r['connections']:>12}"
        )
        lines += [f"  error: {e}" for e in r["errors"]]
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Feed completeness under concurrent writers: a paging reader and an SSE "
        "reader reconnecting with Last-Event-ID; prints missed and repeated (issue 15)."
    )
    p.add_argument("--writers", type=int, default=8, help="concurrent writer threads")
    p.add_argument("--events", type=int, default=5000, help="events written in all")
    p.add_argument(
        "--mode",
        choices=("hold", "post"),
        default="hold",
        help="hold: outbox writes in transactions held open; post: Client.post_message",
    )
    p.add_argument("--hold-ms", type=float, default=40.0, help="hold: longest hold after insert")
    p.add_argument("--page", type=int, default=50, help="paging reader: events per page")
    p.add_argument(
        "--every-ms", type=float, default=3.0, help="paging reader: pause when caught up"
    )
    p.add_argument(
        "--reconnect-every", type=float, default=1.0, help="SSE reader: seconds per connection"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the readers may drain")
    p.add_argument("--pg-admin", default=None, help="an existing server's admin URL")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.writers < 1 or args.events < args.writers:
        p.error("--writers must be >= 1 and --events >= --writers")
    return args


def measure(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, str], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """`run` on a PostgreSQL server of its own (or `--pg-admin`'s); prints its figures,
    as JSON with `--json`. Shared by the scripts of issue 15."""
    with contextlib.ExitStack() as stack:
        admin = args.pg_admin or stack.enter_context(private_postgres())
        out = run(args, admin)
    print(json.dumps(out, indent=2) if args.json else report(out))
    return out


def main(argv: list[str] | None = None) -> int:
    quiet_and_interruptible()
    out = measure(parse(argv), run, report)
    bad = any(r["missed"] or r["repeated"] or r["unknown"] for r in out["readers"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
