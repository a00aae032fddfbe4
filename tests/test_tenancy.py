"""A tenancy model that is whole (issue 15): every agent belongs to a tenant, also when the
CLI or `agentq.Client` creates it; names are unique per tenant in any case (the database
decides under concurrency); agents are updated and deleted (soft) through the Client, the
CLI and the API, with events; a tenant never sees, updates or deletes another's agent;
and a Client or CLI acting for tenant B cannot post into, read or retry tenant A's
conversations, messages or jobs by id (the same NotFound as an unknown id)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from agentq import errors, turn
from agentq.cli import app as cli_app
from agentq.client import Client
from agentq.ops import conversations, jobs
from agentq.store.models import Event, Message
from agentq.store.session import reader
from tests.api_support import Server, api_server, cli_create_key
from tests.conftest import Live, apply_env
from tests.helpers import jobs_of, make_dm, wait_until

QUICK = {"debounce_seconds": 0.1, "max_wait_seconds": 0.3}


def tag() -> str:
    return uuid.uuid4().hex[:8]


def agent_events(agent_id: uuid.UUID | str) -> list[str]:
    with reader() as s:
        rows = s.scalars(select(Event).where(Event.type.like("agent.%")).order_by(Event.id))
        return [e.type for e in rows if e.payload.get("agent_id") == str(agent_id)]


# -- in-process, on SQLite and PostgreSQL -----------------------------------------------------


def test_names_are_unique_per_tenant_in_any_case(db: str) -> None:
    a, b = Client(tenant=f"a-{tag()}"), Client(tenant=f"b-{tag()}")
    name = f"Ava-{tag()}"
    made = a.create_agent(name)
    for again in (name, name.upper(), name.lower()):
        with pytest.raises(errors.Conflict):
            a.create_agent(again)
    # Another tenant's names are no concern: the same name, in any case, is free there.
    other = b.create_agent(name.lower())
    assert other.id != made.id
    # Found by name in any case, in its own tenant only.
    assert a.get_agent(name.upper()).id == made.id
    assert b.get_agent(name).id == other.id
    with pytest.raises(errors.AgentNotFound):
        b.get_agent(made.id)
    assert [x.id for x in a.list_agents()] == [made.id]
    assert [x.id for x in b.list_agents()] == [other.id]


def test_ten_concurrent_creates_of_one_name_make_one(db: str) -> None:
    c = Client(tenant=f"race-{tag()}")
    name = f"Racer-{tag()}"
    spellings = [name, name.lower(), name.upper()] * 4
    barrier = threading.Barrier(10)

    def create(i: int) -> str:
        barrier.wait()
        try:
            c.create_agent(spellings[i])
            return "created"
        except errors.Conflict:
            return "conflict"

    with ThreadPoolExecutor(10) as pool:
        outcomes = sorted(pool.map(create, range(10)))
    assert outcomes == ["conflict"] * 9 + ["created"]
    assert len(c.list_agents()) == 1


def test_the_default_tenant_and_agentq_tenant(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTQ_TENANT", raising=False)
    assert Client().tenant == "default"
    made = Client().create_agent(f"dflt-{tag()}")
    assert Client(tenant="default").get_agent(made.id).id == made.id
    monkeypatch.setenv("AGENTQ_TENANT", "from-env")
    assert Client().tenant == "from-env"
    with pytest.raises(errors.AgentNotFound):
        Client().get_agent(made.id)
    with pytest.raises(errors.InvalidInput, match="tenant"):
        Client(tenant="")


def test_update_checks_like_create_and_publishes_agent_updated(db: str) -> None:
    c = Client(tenant=f"upd-{tag()}")
    made = c.create_agent(f"Up-{tag()}", role="cook", model_config={"max_tokens": 100})
    out = c.update_agent(
        made.name.lower(),
        role="chef",
        goal="dinner",
        system_prompt="be brief",
        model_config={"temperature": 0.5},
        max_concurrent_jobs=2,
    )
    assert (out.role, out.goal, out.system_prompt) == ("chef", "dinner", "be brief")
    # model_config is merged over the stored one; None removes a key
    assert out.model_config_ == {"profile": "default", "max_tokens": 100, "temperature": 0.5}
    assert out.max_concurrent_jobs == 2 and out.backstory == made.backstory
    out = c.update_agent(made.id, model_config={"max_tokens": None}, system_prompt=None)
    assert out.model_config_ == {"profile": "default", "temperature": 0.5}
    assert out.system_prompt is None
    for bad, field in (
        ({"model_config": {"endpoint": "http://attacker/v1"}}, "model_config.endpoint"),
        ({"model_config": {"api_key_env": "AGENTQ_DATABASE_URL"}}, "model_config.api_key_env"),
        ({"model_config": {"max_tokens": 10**9}}, "model_config.max_tokens"),
        ({"model_config": {"temperature": float("nan")}}, "model_config.temperature"),
        ({"max_concurrent_jobs": 10_000}, "max_concurrent_jobs"),
        ({"name": "renamed"}, "name"),
        ({"provider": "x.y:Z"}, "provider"),
    ):
        with pytest.raises(errors.InvalidInput) as caught:
            c.update_agent(made.id, **bad)
        assert caught.value.field == field
    with pytest.raises(errors.UnknownProfile):
        c.update_agent(made.id, model_config={"profile": f"nope-{tag()}"})
    assert c.get_agent(made.id).role == "chef"  # nothing of a refused update is kept
    assert agent_events(made.id) == ["agent.created", "agent.updated", "agent.updated"]


def test_delete_is_soft_frees_the_name_and_publishes_agent_deleted(db: str) -> None:
    c = Client(tenant=f"del-{tag()}")
    made = c.create_agent(f"Gone-{tag()}")
    c.delete_agent(made.name.upper())
    for act in (c.get_agent, c.pause_agent, c.start_agent, c.delete_agent):
        with pytest.raises(errors.AgentNotFound):
            act(made.id)
    with pytest.raises(errors.AgentNotFound):
        c.update_agent(made.id, role="x")
    assert c.list_agents() == []
    assert agent_events(made.id) == ["agent.created", "agent.stopped", "agent.deleted"]
    # its name is free again in its tenant
    assert c.create_agent(made.name).id != made.id


def test_another_tenant_cannot_update_or_delete(db: str) -> None:
    a, b = Client(tenant=f"a-{tag()}"), Client(tenant=f"b-{tag()}")
    made = a.create_agent(f"Mine-{tag()}")
    for act in (
        lambda: b.update_agent(made.id, role="pwned"),
        lambda: b.update_agent(made.name, role="pwned"),
        lambda: b.delete_agent(made.id),
        lambda: b.stop_agent(made.id),
        lambda: b.start_session(made.id, "u1"),
    ):
        with pytest.raises(errors.AgentNotFound):
            act()
    assert a.get_agent(made.id).role == "" and a.get_agent(made.id).status == "active"


def _tenant_pair_with_a_job() -> tuple[Client, Client, Any, Any, Any, uuid.UUID]:
    """Tenant A's DM with one posted message and the job answering it (dispatched in this
    process: no worker runs), and tenant B's client."""
    a, b = Client(tenant=f"a-{tag()}"), Client(tenant=f"b-{tag()}")
    conv, user, _ = make_dm(a, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    posted = a.post_message(conv.id, user.id, "mine")
    turn.dispatch_due(conv.id)
    (job_id,) = jobs.jobs_for_message(posted.id)
    return a, b, conv, user, posted, job_id


def test_another_tenants_conversation_message_and_job_by_id_are_not_found(db: str) -> None:
    a, b, conv, user, posted, job_id = _tenant_pair_with_a_job()
    unknown = uuid.uuid4()
    # each call of B by one of A's ids, and the same call by an id that names nothing
    calls: list[tuple[str, Callable[[Any], object]]] = [
        ("post", lambda i: b.post_message(i, user.id, "intruder")),
        ("ask", lambda i: b.ask(i, user.id, "intruder", timeout=0.1)),
        ("list messages", lambda i: b.list_messages(i)),
        ("add participant", lambda i: b.add_participant(i, user_id="mallory")),
        ("stream", lambda i: b.stream(i, timeout=0.1)),
        ("wait for reply", lambda i: b.wait_for_reply(i, timeout=0.1)),
        ("get job", lambda i: b.get_job(i)),
        ("retry job", lambda i: b.retry_job(i)),
    ]
    theirs = {"wait for reply": posted.id, "get job": job_id, "retry job": job_id}
    for what, call in calls:
        with pytest.raises(errors.NotFound) as refused:
            call(theirs.get(what, conv.id))
        with pytest.raises(errors.NotFound) as missing:
            call(unknown)
        assert type(refused.value) is type(missing.value), what
        assert str(refused.value) == str(missing.value).replace(
            str(unknown), str(refused.value.ident)
        )
    # nothing of B's was written, and A still reaches all of it
    assert [m.content for m in a.list_messages(conv.id)] == ["mine"]
    assert len(conversations.list_participants(conv.id)) == 2
    assert a.get_job(job_id).status == "waiting"
    assert jobs.jobs_for_message(posted.id) == [job_id]


def test_the_cli_acts_for_its_tenant_by_id(db: str) -> None:
    a, b, conv, user, posted, job_id = _tenant_pair_with_a_job()
    runner = CliRunner()

    def agentq(*args: str, tenant: str | None = None) -> Result:
        env = {"AGENTQ_TENANT": tenant} if tenant else {}
        return runner.invoke(cli_app, list(args), env=env)

    post = ("post", str(conv.id), str(user.id))
    for args in (("--tenant", b.tenant), ()):
        refused = agentq(*post, "from the shell", *args, tenant=b.tenant)
        assert refused.exit_code == 2 and "not found" in refused.output, refused.output
    for cmd in (("jobs", "show", str(job_id)), ("jobs", "retry", str(job_id))):
        refused = agentq(*cmd, "--tenant", b.tenant)
        assert refused.exit_code == 2 and f"job {job_id} not found" in refused.output
    assert (
        json.loads(
            agentq("jobs", "retry", "--all-failed", "--yes", "--json", tenant=b.tenant).output
        )
        == []
    )
    assert [m.content for m in a.list_messages(conv.id)] == ["mine"]

    # A's own: by --tenant, and by AGENTQ_TENANT
    assert agentq(*post, "by flag", "--tenant", a.tenant).exit_code == 0
    assert agentq(*post, "by env", tenant=a.tenant).exit_code == 0
    shown = agentq("jobs", "show", str(job_id), "--json", tenant=a.tenant)
    assert shown.exit_code == 0 and json.loads(shown.output)["id"] == str(job_id)
    assert [m.content for m in a.list_messages(conv.id)] == ["mine", "by flag", "by env"]


# -- the real API, the CLI and real workers ---------------------------------------------------


@pytest.fixture(scope="module")
def server(live_stack: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_server(live_stack.env, tmp_path_factory.mktemp("api")) as srv:
        yield srv


def api(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration
def test_api_names_per_tenant_case_insensitive_and_concurrent(
    live_stack: Live, server: Server
) -> None:
    key_a, key_b = cli_create_key(live_stack.env), cli_create_key(live_stack.env)
    name = f"Bot-{tag()}"
    with api(server, key_a) as a, api(server, key_b) as b:
        assert a.post("/v1/agents", json={"name": name}).status_code == 201
        dup = a.post("/v1/agents", json={"name": name.swapcase()})
        assert dup.status_code == 409 and dup.json()["status"] == 409
        # the same name in another tenant: created, and nothing said of tenant A
        assert b.post("/v1/agents", json={"name": name}).status_code == 201

        racer = f"Racer-{tag()}"
        barrier = threading.Barrier(10)

        def create(i: int) -> httpx.Response:
            barrier.wait()
            return a.post("/v1/agents", json={"name": racer.upper() if i % 2 else racer})

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(create, range(10)))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201] + [409] * 9, [(r.status_code, r.text) for r in answers]
        assert all(
            r.headers["content-type"].startswith("application/problem+json")
            for r in answers
            if r.status_code == 409
        )
        names = [x["name"].lower() for x in a.get("/v1/agents").json()]
        assert names.count(racer.lower()) == 1 and names.count(name.lower()) == 1


@pytest.mark.integration
def test_client_and_cli_agents_belong_to_their_tenant(live_stack: Live, server: Server) -> None:
    tenant = f"acme-{tag()}"
    key_a = cli_create_key(live_stack.env, tenant)  # a key's tenant is named like the key
    key_b = cli_create_key(live_stack.env)
    apply_env(live_stack.env)
    by_client = Client(tenant=tenant).create_agent(f"Py-{tag()}")
    made = cli(live_stack.env, "agents", "create", f"Cli-{tag()}", "--tenant", tenant, "--json")
    assert made.returncode == 0, made.stderr
    by_cli = json.loads(made.stdout)[0]
    env_made = cli(
        {**live_stack.env, "AGENTQ_TENANT": tenant}, "agents", "create", f"Env-{tag()}", "--json"
    )
    assert env_made.returncode == 0, env_made.stderr
    by_env = json.loads(env_made.stdout)[0]
    ids = {str(by_client.id), by_cli["id"], by_env["id"]}
    with api(server, key_a) as a, api(server, key_b) as b:
        assert ids <= {x["id"] for x in a.get("/v1/agents").json()}
        assert not ids & {x["id"] for x in b.get("/v1/agents").json()}
        for agent_id in ids:
            assert a.get(f"/v1/agents/{agent_id}").status_code == 200
            assert b.get(f"/v1/agents/{agent_id}").status_code == 404
    listed = cli(live_stack.env, "agents", "list", "--tenant", tenant, "--json")
    assert {x["id"] for x in json.loads(listed.stdout)} == ids
    # conversations the Client makes are the tenant's too
    conv = Client(tenant=tenant).create_conversation("channel")
    with api(server, key_a) as a, api(server, key_b) as b:
        assert a.get(f"/v1/conversations/{conv.id}").status_code == 200
        assert b.get(f"/v1/conversations/{conv.id}").status_code == 404


@pytest.mark.integration
def test_api_update_and_delete_with_events_and_other_tenants_get_404(
    live_stack: Live, server: Server
) -> None:
    key_a, key_b = cli_create_key(live_stack.env), cli_create_key(live_stack.env)
    with api(server, key_a) as a, api(server, key_b) as b:
        made = a.post("/v1/agents", json={"name": f"Ed-{tag()}", "role": "cook"}).json()
        url = f"/v1/agents/{made['id']}"
        assert b.patch(url, json={"role": "pwned"}).status_code == 404
        assert b.delete(url).status_code == 404
        r = a.patch(url, json={"role": "chef", "model_config": {"temperature": 0.3}})
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "chef" and r.json()["model_config_"]["temperature"] == 0.3
        bad = a.patch(url, json={"model_config": {"endpoint": "http://attacker/v1"}})
        assert bad.status_code == 422
        assert a.patch(url, json={"name": "renamed"}).status_code == 422
        assert a.get(url).json()["role"] == "chef"

        gone = a.delete(url)
        assert gone.status_code == 204 and gone.content == b""
        assert a.get(url).status_code == 404
        assert a.patch(url, json={"role": "x"}).status_code == 404
        assert a.delete(url).status_code == 404
        assert made["id"] not in {x["id"] for x in a.get("/v1/agents").json()}
    assert agent_events(made["id"]) == [
        "agent.created",
        "agent.updated",
        "agent.stopped",
        "agent.deleted",
    ]


@pytest.mark.integration
def test_cli_update_and_delete(live_stack: Live) -> None:
    tenant, name = f"ops-{tag()}", f"Op-{tag()}"
    env = live_stack.env
    assert cli(env, "agents", "create", name, "--tenant", tenant).returncode == 0
    other = cli(env, "agents", "update", name, "--tenant", f"x-{tag()}", "--role", "pwned")
    assert other.returncode == 2 and "not found" in other.stderr
    up = cli(
        env,
        "agents",
        "update",
        name.lower(),
        "--tenant",
        tenant,
        "--role",
        "chef",
        "--temperature",
        "0.7",
        "--json",
    )
    assert up.returncode == 0, up.stderr
    (row,) = json.loads(up.stdout)
    assert row["role"] == "chef" and row["model_config_"]["temperature"] == 0.7
    refused = cli(env, "agents", "update", name, "--tenant", tenant, "--max-tokens", "999999999")
    assert refused.returncode == 2 and "max_tokens" in refused.stderr
    assert cli(env, "agents", "delete", name, "--tenant", tenant).returncode == 0
    assert cli(env, "agents", "get", name, "--tenant", tenant).returncode == 2
    assert json.loads(cli(env, "agents", "list", "--tenant", tenant, "--json").stdout) == []


@pytest.mark.integration
def test_deleted_agent_fails_its_waiting_jobs_and_answers_nothing_new(live: Live) -> None:
    c = Client(tenant=f"dm-{tag()}")
    conv, user, agent_id = make_dm(c, settings=QUICK)
    c.pause_agent(agent_id)
    c.post_message(conv.id, user.id, "anyone?")
    wait_until(lambda: jobs_of(conv.id), timeout=20, what="a job waiting on the paused agent")
    name = c.get_agent(agent_id).name
    c.delete_agent(agent_id)
    (job,) = jobs_of(conv.id)
    assert job.status == "failed" and "was stopped" in (job.failure_reason or "")
    with reader() as s:
        notes = list(
            s.scalars(
                select(Message.content).where(
                    Message.conversation_id == conv.id, Message.role == "system"
                )
            )
        )
    assert any(n.endswith(f"agent {name} was stopped") for n in notes)
    # no new job for a deleted agent, and it cannot be started again
    c.post_message(conv.id, user.id, "still there?")
    time.sleep(1.5)
    assert len(jobs_of(conv.id)) == 1
    with pytest.raises(errors.AgentNotFound):
        c.start_agent(agent_id)
