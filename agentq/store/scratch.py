"""Scratch PostgreSQL databases for the tests, the chaos runner and the benchmarks: made
fresh on a server they may administer, and dropped afterwards."""

from __future__ import annotations

import os
import uuid

#: a database on the server where scratch databases may be created and dropped
ADMIN_URL = os.environ.get("AGENTQ_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


def create_database(admin_url: str = ADMIN_URL, prefix: str = "agentq_test") -> str:
    """Create an empty database; returns its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_database(url: str, admin_url: str = ADMIN_URL) -> None:
    """Drop the database at `url`, closing this process's connections to it first."""
    import psycopg

    from agentq.store.session import dispose_engines

    dispose_engines()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
