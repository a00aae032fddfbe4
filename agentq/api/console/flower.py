"""Flower's API as the console asks it: a Celery task's arguments (agentq's tasks take
ids), a job's newest task. Asked without a server thread: a slow Flower holds no thread
other requests need."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from agentq.api.settings import api_settings

log = logging.getLogger(__name__)

#: seconds the console waits for Flower's API
TIMEOUT = 3.0


def public() -> str:
    """Flower's address as the console links it (without the credentials
    AGENTQ_FLOWER_URL may carry for its API); "" when unset."""
    raw = api_settings().flower_url
    if not raw:
        return ""
    url = httpx.URL(raw)
    return str(url.copy_with(username=None, password=None)).rstrip("/")


async def ask(path: str, **params: str) -> Any:
    """An answer of Flower's API (JSON), or None: Flower unset, away or refusing. The
    credentials of AGENTQ_FLOWER_URL (user:password@) go as basic auth."""
    raw = api_settings().flower_url
    if not raw:
        return None
    return await _get(httpx.URL(raw), path, params)


async def _get(url: httpx.URL, path: str, params: dict[str, str]) -> Any:
    auth = (url.username, url.password) if url.username else None
    base = str(url.copy_with(username=None, password=None)).rstrip("/")
    try:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT) as client:
            answer = await client.get(f"{base}{path}", params=params)
    except httpx.HTTPError as exc:
        log.warning("console: Flower did not answer: %s", type(exc).__name__)
        return None
    if answer.status_code != 200:
        log.warning("console: Flower answered %d", answer.status_code)
        return None
    try:
        return answer.json()
    except ValueError:
        return None


async def task_args(task_id: str) -> str:
    """The arguments Flower recorded for a Celery task, as Flower writes them ("" for a
    task it does not know)."""
    info = await ask(f"/api/task/info/{task_id}")
    return str(info.get("args", "")) if isinstance(info, dict) else ""


async def newest_task(job_id: str) -> str | None:
    """The id of the job's newest Celery task (agentq's tasks take the job id as their
    argument), or None."""
    tasks = await ask("/api/tasks", search=f"args:{job_id}", limit="50")
    if not isinstance(tasks, dict) or not tasks:
        return None
    newest = max(tasks.values(), key=lambda t: t.get("received") or t.get("timestamp") or 0)
    return str(newest["uuid"])
