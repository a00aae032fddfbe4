"""Agent names in any script (SQLite and PostgreSQL): accepted by the Client and the CLI,
unique per tenant in any case (SQLite's lower() folds ASCII only: the key is Python's),
found by name in any case, and @mentioned in any case; refusals say what a name may be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentq import errors, names, turn
from agentq.client import Client
from agentq.store.migrate import upgrade

NOW = {"debounce_seconds": 0, "max_wait_seconds": 0}
UNICODE_NAMES = ["Zoë", "助手", "Ólafur-2", "नमस्ते", "Σοφία", "Straße", "ǅemal"]


def tenant() -> Client:
    return Client(tenant=f"names-{uuid.uuid4().hex[:8]}")


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_letters_of_any_script_make_a_name(name: str) -> None:
    assert names.check(name) == name


def test_a_name_is_kept_in_nfc_and_compared_by_its_case_folded_key() -> None:
    decomposed = "Zoe\u0308"
    assert names.check(decomposed) == "Zoë"
    assert len({names.key(n) for n in ("Zoë", "ZOË", "zoë", decomposed)}) == 1
    assert names.key("STRASSE") == names.key("Straße")
    assert names.key("ΣΟΦΊΑ") == names.key("σοφία")
    assert names.key("Zoe") != names.key("Zoë")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "0 characters"),
        ("x" * 101, "101 characters"),
        ("1abc", "does not start with a letter"),
        ("_x", "does not start with a letter"),
        ("a b", "' ' is not allowed"),
        ("bob!", "'!' is not allowed"),
        ("nul\x00", "'\\x00' is not allowed"),
        ("emoji🙂", "'🙂' is not allowed"),
        ("at@sign", "'@' is not allowed"),
    ],
)
def test_a_refused_name_gets_an_error_saying_what_is_allowed(name: str, says: str) -> None:
    with pytest.raises(errors.InvalidInput) as raised:
        names.check(name)
    assert raised.value.field == "name"
    message = str(raised.value)
    assert says in message
    assert "a letter first, then letters, digits, _ . or -" in message
    assert "any script" in message
    assert len(message) < 400  # a long name is quoted cut


def test_mentions_find_names_in_any_case_and_script_and_end_at_punctuation() -> None:
    keys = {names.key(n) for n in ["Zoë", "助手", "Ólafur-2", "bob", "bob.x"]}
    text = "hi @ZOË. and @助手，please @ólafur-2! @bob. @bob.x @nobody @Zoë again"
    assert names.mentioned(text, keys) == ["zoë", "助手", "ólafur-2", "bob", "bob.x"]
    decomposed = unicodedata.normalize("NFD", "@ZOË hi")
    assert names.mentioned(decomposed, keys) == ["zoë"]
    assert names.mentioned("mail me at x@bob", keys) == ["bob"]
    assert names.mentioned("@ @1 @@", keys) == []


# -- stored names: both databases --------------------------------------------------------------


def test_unicode_names_are_created_found_and_listed(db: str) -> None:
    client = tenant()
    made = [client.create_agent(n) for n in UNICODE_NAMES]
    assert [a.name for a in made] == UNICODE_NAMES
    assert sorted(a.name for a in client.list_agents()) == sorted(UNICODE_NAMES)
    assert client.get_agent("ZOË").id == made[0].id
    assert client.get_agent("zoe\u0308").id == made[0].id
    assert client.get_agent("ΣΟΦΊΑ").id == made[4].id
    assert client.get_agent("STRASSE").id == made[5].id


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Zoë", "ZOË"),
        ("Ólafur", "óLAFUR"),
        ("Zoë", "zoe\u0308"),
        ("Straße", "STRASSE"),
        ("bob", "BOB"),
    ],
)
def test_names_differing_only_in_case_are_one_name_in_a_tenant(
    db: str, first: str, second: str
) -> None:
    client = tenant()
    client.create_agent(first)
    with pytest.raises(errors.Conflict, match="already exists"):
        client.create_agent(second)
    assert [a.name for a in client.list_agents()] == [first]
    # another tenant's names are no concern of this one's
    assert tenant().create_agent(second).name == unicodedata.normalize("NFC", second)


def test_a_deleted_agents_unicode_name_is_free_again(db: str) -> None:
    client = tenant()
    gone = client.create_agent("Zoë")
    client.delete_agent(gone.id)
    assert client.create_agent("ZOË").name == "ZOË"


def test_concurrent_creates_of_one_name_in_several_cases_make_one_agent(db: str) -> None:
    client = tenant()
    spellings = ["Zoë", "ZOË", "zoë", "zOë", "Zoe\u0308", "ZOE\u0308"] * 2
    barrier = threading.Barrier(len(spellings))

    def create(name: str) -> str:
        barrier.wait()
        try:
            client.create_agent(name)
            return "created"
        except errors.Conflict:
            return "conflict"

    with ThreadPoolExecutor(len(spellings)) as pool:
        outcomes = list(pool.map(create, spellings))
    assert sorted(outcomes) == ["conflict"] * (len(spellings) - 1) + ["created"]
    assert len(client.list_agents()) == 1


def test_a_unicode_mention_routes_to_that_agent(db: str) -> None:
    client = tenant()
    zoe = client.create_agent("Zoë", role="cook", goal="recipes")
    helper = client.create_agent("助手", role="accountant", goal="taxes")
    conv = client.create_conversation("channel", settings=NOW)
    client.add_participant(conv.id, agent=zoe.id)
    client.add_participant(conv.id, agent=helper.id)
    user = client.add_participant(conv.id, user_id="pat")
    client.post_message(conv.id, user.id, "@助手 what about my recipes for dinner?")
    (job_id,) = turn.dispatch_due(conv.id).jobs
    assert client.get_job(job_id).agent_id == helper.id
    client.post_message(conv.id, user.id, "and you, @ZOË?")
    jobs = turn.dispatch_due(conv.id).jobs
    assert [client.get_job(j).agent_id for j in jobs] == [zoe.id]


def test_the_cli_creates_and_finds_unicode_names_and_says_what_is_allowed(db: str) -> None:
    team = f"names-{uuid.uuid4().hex[:8]}"

    def agentq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentq.cli", "agents", *args, "--tenant", team],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
            timeout=60,
        )

    made = agentq("create", "Ólafur-2", "--json")
    assert made.returncode == 0, made.stderr
    (agent,) = json.loads(made.stdout)
    assert agent["name"] == "Ólafur-2"
    found = agentq("get", "ÓLAFUR-2", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["id"] == agent["id"]
    listed = agentq("list")
    assert listed.returncode == 0 and "Ólafur-2" in listed.stdout
    again = agentq("create", "ólafur-2")
    assert again.returncode != 0 and "already exists" in again.stderr
    bad = agentq("create", "two words")
    assert bad.returncode == 2
    assert "' ' is not allowed" in bad.stderr and "any script" in bad.stderr


def test_migration_0007_keys_names_sqlite_let_collide_in_case(tmp_path: Path) -> None:
    """Under 0005, SQLite's ASCII-only lower() let "ZOË" and "zoë" be two names of one
    tenant; 0007 keys every name and renames the younger of such a pair."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0005")
    engine = sa.create_engine(url)
    tid, now = uuid.uuid4().hex, datetime.now(UTC).replace(tzinfo=None)
    row = {
        "tenant_id": tid,
        **dict.fromkeys(("role", "backstory", "goal"), ""),
        "provider": "openai",
        "status": "active",
        "model_config": "{}",
        **dict.fromkeys(("max_concurrent_jobs", "rate_limit_per_minute", "total_responses"), 1),
    }
    tenants = sa.table("tenants", *(sa.column(c) for c in ("id", "name", "created_at")))
    columns = (*row, "id", "name", "created_at", "updated_at")
    agents = sa.table("agents", *(sa.column(c) for c in columns))
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(id=tid, name="old", created_at=now))
        for i, name in enumerate(["ZOË", "zoë", "助手"]):
            at = now + timedelta(seconds=i)
            conn.execute(
                sa.insert(agents).values(
                    id=uuid.uuid4().hex, name=name, created_at=at, updated_at=at, **row
                )
            )
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, name_key FROM agents ORDER BY created_at"))
        assert rows.all() == [("ZOË", "zoë"), ("zoë-2", "zoë-2"), ("助手", "助手")]
    engine.dispose()
