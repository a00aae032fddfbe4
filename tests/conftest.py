"""Fixtures: real Redis (a redis-server process of the test run's own), real PostgreSQL
(a fresh database on the local server), SQLite, the fake LLM over HTTP, and real Celery
worker processes. Nothing agentq owns or that runs here is mocked."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentq.client import Client
from agentq.runtime.embedded import EmbeddedRedis
from agentq.store.migrate import upgrade
from agentq.store.scratch import create_database, drop_database
from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from agentq.testing.stack import Stack, use_env
from tests.profile_support import profiles_json

#: settings that make failures and recovery quick enough to test
FAST = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.2",
    "AGENTQ_MAX_WAIT_SECONDS": "1",
    "AGENTQ_JOB_LEASE_SECONDS": "8",
    "AGENTQ_CLAIM_PICKUP_SECONDS": "8",
    "AGENTQ_RATE_LIMIT_PERIOD_SECONDS": "12",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "1",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "1",
    "AGENTQ_RETRY_BACKOFF_SECONDS": "0.2",
    "AGENTQ_RETRY_BACKOFF_MAX_SECONDS": "1",
    "LLM_BACKOFF_BASE": "0.05",
    "LLM_BACKOFF_MAX": "2",
    "LLM_TIMEOUT": "5",
    "LLM_API_KEY": "sk-test-SECRET-0123456789",
    # Off: tests of failing providers expect failed jobs, which an open circuit holds
    # instead (tests/test_breaker.py turns it on).
    "AGENTQ_BREAKER_FAILURES": "0",
    "LLM_PROVIDER": "openai",
    "AGENTQ_MODEL_PROFILES": profiles_json(),
}


apply_env = use_env


def create_pg_database() -> str:
    return create_database()


def drop_pg_database(url: str) -> None:
    drop_database(url)


@pytest.fixture(scope="module")
def restored_env() -> Iterator[None]:
    """Leave the environment as found: later tests (and the workers they start) must not
    inherit a module's settings."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    apply_env(saved)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(FakeLLMConfig(latency=0.05)) as server:
        yield server


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'agentq.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def base_env(
    redis_server: EmbeddedRedis,
    fake_llm: FakeLLMServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    # Model profiles of servers tests start later go in this file (declare_profile).
    profiles_file = tmp_path_factory.mktemp("profiles") / "profiles.json"
    profiles_file.write_text("{}")
    return {
        **FAST,
        "AGENTQ_REDIS_URL": redis_server.url,
        "LLM_ENDPOINT": fake_llm.url,
        "AGENTQ_MODEL_PROFILES_FILE": str(profiles_file),
    }


@pytest.fixture(scope="session")
def quiet_redis() -> Iterator[EmbeddedRedis]:
    """A Redis no worker listens on: tasks sent there wait, so tests drive steps by hand."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module")
def module_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of the test module's own: no worker listens unless a test starts one."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh, migrated database of the test module's own, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'agentq.db'}"
    else:
        url = create_pg_database()
    upgrade(url)
    yield url
    if request.param == "postgresql":
        drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(
    request: pytest.FixtureRequest, base_env: dict[str, str], quiet_redis: EmbeddedRedis
) -> Iterator[str]:
    """Each test using it runs on SQLite and on PostgreSQL, with no worker running."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    apply_env({**base_env, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": quiet_redis.url})
    yield url


@dataclass
class Live:
    client: Client
    stack: Stack
    env: dict[str, str]
    redis: EmbeddedRedis


@pytest.fixture(scope="session")
def live_stack(
    pg_url: str,
    base_env: dict[str, str],
    redis_server: EmbeddedRedis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """PostgreSQL, Redis, two worker processes and the reconciler, for the whole run."""
    env = {**base_env, "AGENTQ_DATABASE_URL": pg_url}
    apply_env(env)
    with Stack(env, log_dir=tmp_path_factory.mktemp("logs")) as stack:
        stack.start_worker(concurrency=20)
        stack.start_worker(concurrency=20)
        stack.start_reconciler(interval=1.0)
        yield Live(Client(), stack, env, redis_server)


@pytest.fixture
def live(live_stack: Live) -> Live:
    apply_env(live_stack.env)
    return live_stack


@pytest.fixture
def isolated(base_env: dict[str, str], tmp_path: object) -> Iterator[Live]:
    """A stack of its own (fresh database, own Redis), for tests that kill or flush."""
    url = create_pg_database()
    upgrade(url)
    with EmbeddedRedis() as server:
        env = {**base_env, "AGENTQ_DATABASE_URL": url, "AGENTQ_REDIS_URL": server.url}
        apply_env(env)
        with Stack(env, log_dir=f"{tmp_path}/logs") as stack:
            yield Live(Client(), stack, env, server)
    drop_pg_database(url)


@contextmanager
def stack_with(
    base_env: dict[str, str], tmp_path: Path, llm: FakeLLMServer, **env: str
) -> Iterator[Stack]:
    """A stack of its own (fresh database, own Redis) against `llm`, with `env` over the
    suite's settings; no process started yet."""
    url = create_pg_database()
    upgrade(url)
    try:
        with EmbeddedRedis() as redis:
            full = {
                **base_env,
                "AGENTQ_DATABASE_URL": url,
                "AGENTQ_REDIS_URL": redis.url,
                "LLM_ENDPOINT": llm.url,
                "LLM_TIMEOUT": "30",
                **env,
            }
            apply_env(full)
            with Stack(full, log_dir=tmp_path / "logs") as stack:
                yield stack
    finally:
        drop_pg_database(url)
