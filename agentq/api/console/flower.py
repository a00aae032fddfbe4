"""Flower's API as the console asks it: a Celery task's arguments (agentq's tasks take
ids), a job's newest task. Operators only: Flower holds every tenant's tasks, so a
tenant's session never reaches it (no links, no lookups; see `agentq.api.console.find`).

Asked without a server thread (a slow Flower holds no thread other requests need), at
most SLOTS at once in an API process: a burst of lookups against a slow Flower waits
SLOT_WAIT_SECONDS for a slot, then answers "Flower busy" instead of piling up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import weakref
from typing import Any

import httpx

from agentq.api.settings import api_settings

log = logging.getLogger(__name__)

#: seconds the console waits for Flower's API
TIMEOUT = 3.0
#: Flower lookups in flight at once in one API process: an operator's page asks one at a
#: time, so a few serve several operators; more only queue up behind a slow Flower
SLOTS = 4
#: how long a lookup waits for a slot before answering "Flower busy"
SLOT_WAIT_SECONDS = 0.5

# one semaphore an event loop (an asyncio.Semaphore belongs to the first loop that waits on it)
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


class FlowerBusy(Exception):
    """Every slot was taken for SLOT_WAIT_SECONDS: Flower was not asked."""


def public() -> str:
    """Flower's address as the console links it (without the credentials
    AGENTQ_FLOWER_URL may carry for its API); "" when unset."""
    raw = api_settings().flower_url
    if not raw:
        return ""
    url = httpx.URL(raw)
    return str(url.copy_with(username=None, password=None)).rstrip("/")


@functools.cache
def _tls() -> ssl.SSLContext:
    # Built once: a client building its own reads the CA bundle, ~20 ms of the event loop
    # each, which a burst of lookups turned into a second's stall of every request.
    return httpx.create_ssl_context()


async def ask(path: str, **params: str) -> Any:
    """An answer of Flower's API (JSON), or None: Flower unset, away or refusing. The
    credentials of AGENTQ_FLOWER_URL (user:password@) go as basic auth. Raises FlowerBusy
    when SLOTS lookups are in flight for SLOT_WAIT_SECONDS."""
    raw = api_settings().flower_url
    if not raw:
        return None
    loop = asyncio.get_running_loop()
    slots = _slots.setdefault(loop, asyncio.Semaphore(SLOTS))
    try:
        async with asyncio.timeout(SLOT_WAIT_SECONDS):
            await slots.acquire()
    except TimeoutError:
        log.warning("console: Flower busy (%d lookups in flight)", SLOTS)
        raise FlowerBusy from None
    try:
        return await _get(httpx.URL(raw), path, params)
    finally:
        slots.release()


async def _get(url: httpx.URL, path: str, params: dict[str, str]) -> Any:
    auth = (url.username, url.password) if url.username else None
    base = str(url.copy_with(username=None, password=None)).rstrip("/")
    try:
        async with httpx.AsyncClient(auth=auth, timeout=TIMEOUT, verify=_tls()) as client:
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
    task it does not know; FlowerBusy)."""
    info = await ask(f"/api/task/info/{task_id}")
    return str(info.get("args", "")) if isinstance(info, dict) else ""


async def newest_task(job_id: str) -> str | None:
    """The id of the job's newest Celery task (agentq's tasks take the job id as their
    argument), or None (FlowerBusy)."""
    tasks = await ask("/api/tasks", search=f"args:{job_id}", limit="50")
    if not isinstance(tasks, dict) or not tasks:
        return None
    newest = max(tasks.values(), key=lambda t: t.get("received") or t.get("timestamp") or 0)
    return str(newest["uuid"])
