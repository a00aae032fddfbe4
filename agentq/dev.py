"""`agentq dev`: a long-running local stack, on the embedded default.

A SQLite file in the current directory (or a given database), a Redis it starts itself
(or a given one), a control and an LLM worker process, the reconciler, the HTTP API under
uvicorn and the fake LLM: the processes a deployment runs, on one machine. It creates a
development key, agent and conversation, writes `./.env` so that a fresh `python` here
finds the same database and Redis, prints what to paste, then one line per finished turn
until Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import socket
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from agentq.errors import AgentqError
from agentq.runtime.embedded import EmbeddedRedis

#: the first line of a `.env` written by `agentq dev`: only such a file is rewritten/removed
ENV_MARKER = "# written by `agentq dev`: removed when it stops"
#: the agent and user the printed snippets talk as
AGENT, USER = "Ava", "dev"
#: quicker answers than production's defaults (a burst of typing still coalesces)
DEV_SETTINGS = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.3",
    "AGENTQ_MAX_WAIT_SECONDS": "2",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "2",
}


def _say(line: str) -> None:
    print(line, flush=True)


def _stop(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C or SIGTERM: unwind, stopping every process on the way out; a second Ctrl-C
    while they stop is ignored, so that none is left behind half-stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_dev(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    database_url: str | None = None,
    redis_url: str | None = None,
    latency: float = 0.3,
    write_env: bool = True,
) -> int:
    try:
        import fastapi  # noqa: F401 - the API and the fake LLM are served over HTTP
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(
            f"agentq dev: {exc.name} is not installed: the local stack serves the API and the "
            "fake LLM over HTTP (pip install 'agentq-queue[embedded]')",
            file=sys.stderr,
        )
        return 2
    if not _port_free(host, port):
        print(f"agentq dev: {host}:{port} is in use: choose another with --port", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    here = Path.cwd()
    try:
        with ExitStack() as stack:
            database_url = database_url or f"sqlite:///{here / 'agentq.db'}"
            env = backing_services(
                stack, database_url=database_url, redis_url=redis_url, latency=latency
            )
            key, conv_id, user_id = _prepare(env)
            logs = Path(tempfile.mkdtemp(prefix="agentq-dev-"))
            procs = _start_processes(stack, env, logs, host, port)
            written = _write_env_file(here / ".env", env) if write_env else None
            stack.callback(_remove_env_file, written)
            api = f"http://{host}:{port}"
            _print_usage(api, key, conv_id, user_id, env, logs, written is not None)
            stack.callback(_say, "stopping every process agentq dev started ...")
            return _follow(procs)
    except KeyboardInterrupt:
        _say("stopped: every process agentq dev started has ended")
        return 0
    except (RuntimeError, AgentqError) as exc:  # no redis-server, a process that died...
        print(f"agentq dev: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 0


def _row(label: str, text: str) -> None:
    _say(f"{label + ':':<9} {text}")


def backing_services(
    stack: ExitStack, *, database_url: str, redis_url: str | None, latency: float
) -> dict[str, str]:
    """Redis (`redis_url`, else one started here), the database (migrated) and the fake LLM,
    stopped with `stack`; points this process at them and returns the environment every
    process of the stack shares. `agentq demo` uses it too."""
    from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer

    if redis_url is None:
        redis_url = stack.enter_context(EmbeddedRedis()).url
        _row("redis", f"embedded, {redis_url}")
    else:
        _row("redis", redis_url)
    llm = stack.enter_context(FakeLLMServer(FakeLLMConfig(latency=latency, jitter=latency / 2)))
    _row("llm", f"fake, {llm.url} (latency {latency:.2f}s)")
    env = {
        "AGENTQ_DATABASE_URL": database_url,
        "AGENTQ_REDIS_URL": redis_url,
        "LLM_PROVIDER": "openai",
        "LLM_ENDPOINT": llm.url,
        "LLM_API_KEY": "dev",  # the fake LLM takes any key
        **DEV_SETTINGS,
    }
    from agentq.store.migrate import upgrade
    from agentq.testing.stack import use_env

    use_env(env)
    upgrade()
    _row("database", f"{_redacted(database_url)} (migrated)")
    return env


def _prepare(env: dict[str, str]) -> tuple[str, str, str]:
    """A development key, agent and conversation; returns the key, the conversation's id
    and the user's participant id."""
    from agentq.client import Client
    from agentq.errors import NotFound
    from agentq.ops.keys import create_key

    client = Client()
    try:
        client.get_agent(AGENT)
    except NotFound:
        client.create_agent(AGENT, role="travel guide", goal="suggest places to go")
    conv, user = client.start_session(AGENT, user_id=USER)
    # the key's tenant is the in-process client's, so HTTP and Python see the same agents
    key, info = create_key("agentq-dev", client.tenant)
    _row("key", f"{info.prefix}… (tenant {info.tenant}, `agentq keys revoke {info.id}`)")
    return key, str(conv.id), str(user.id)


def _start_processes(
    stack: ExitStack, env: dict[str, str], logs: Path, host: str, port: int
) -> Any:
    from agentq.runtime.broker import CONTROL_QUEUE, LLM_QUEUE
    from agentq.testing.stack import Stack

    procs = stack.enter_context(Stack(env, log_dir=logs))
    procs.start_worker(queues=(CONTROL_QUEUE,), concurrency=8, name="control")
    _row("worker", "control (8 threads)")
    procs.start_worker(queues=(LLM_QUEUE,), concurrency=20, name="llm")
    _row("worker", "llm (20 threads)")
    procs.start_reconciler(interval=1.0)
    _row("beat", "the reconciler, every 1s")
    procs._spawn("api", ["-m", "agentq.cli", "api", "--host", host, "--port", str(port)])
    _wait_http(f"http://{host}:{port}/healthz", procs.procs["api"])
    _row("api", f"http://{host}:{port}")
    return procs


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, proc: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode} (see its log)")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the API did not answer {url} within {timeout:.0f}s")


def _print_usage(
    api: str,
    key: str,
    conv_id: str,
    user_id: str,
    env: dict[str, str],
    logs: Path,
    env_written: bool,
) -> None:
    body = shlex.quote(f'{{"author_id": "{user_id}", "content": "Where should I go in May?"}}')
    curl = (
        f'curl -s -H "Authorization: Bearer {key}" -H "Content-Type: application/json" '
        f'-X POST "{api}/v1/conversations/{conv_id}/messages?wait=30" -d {body}'
    )
    snippet = [
        "import agentq",
        "client = agentq.Client()",
        f'conv, user = client.start_session("{AGENT}", user_id="sam")',
        'print(client.ask(conv.id, user.id, "Where should I go in May?", timeout=30).content)',
    ]
    where = "reads ./.env" if env_written else "needs the exports below"
    lines = [
        "",
        f"API:      {api}  (docs {api}/docs, OpenAPI {api}/openapi.json)",
        f"key:      {key}  (development key: shown once)",
        f"console:  {api}/console  (log in with the key above)",
        f"logs:     {logs}",
        "",
        "HTTP (posts into a conversation with the agent Ava and waits for the reply):",
        f"  {curl}",
        "",
        f"Python (a fresh `python` in this directory {where}):",
        *(f"  {line}" for line in snippet),
        "",
        "Or in another shell:",
        *(f"  export {k}={shlex.quote(v)}" for k, v in env.items() if k.startswith("AGENTQ_")),
        "",
        "ready: Ctrl-C stops everything",
    ]
    _say("\n".join(lines))


def _follow(procs: Any, every: float = 0.5) -> int:
    """One line per finished or failed job, until a process dies (then exit 1)."""
    from agentq.client import Client
    from agentq.runtime import bus

    client = Client()
    names: dict[str, str] = {}
    cursor: str | int = 0
    while batch := bus.read_feed(after=cursor, limit=1000):  # start after what was there
        cursor = batch[-1]["cursor"]
    while True:
        for name, proc in procs.procs.items():
            if proc.poll() is not None:
                _say(f"{name} exited with {proc.returncode}: stopping (logs above)")
                return 1
        for record in bus.read_feed(after=cursor, limit=1000):
            cursor = record["cursor"]
            line = _turn_line(client, names, record)
            if line:
                _say(line)
        time.sleep(every)


def _turn_line(client: Any, names: dict[str, str], record: dict[str, Any]) -> str | None:
    kind, data = record["type"], record["payload"] or {}
    if kind not in ("job.completed", "job.failed"):
        return None
    agent_id = str(data.get("agent_id"))
    if agent_id not in names:
        try:
            names[agent_id] = client.get_agent(agent_id).name
        except Exception:  # noqa: BLE001 - another tenant's agent: its id will do
            names[agent_id] = agent_id[:8]
    conv = (record["conversation_id"] or "")[:8]
    stamp = time.strftime("%H:%M:%S")
    if kind == "job.failed":
        return f"{stamp}  turn failed    {names[agent_id]} in {conv}…: {data.get('reason')}"
    took = data.get("duration_ms", 0) / 1000
    return f"{stamp}  turn answered  {names[agent_id]} in {conv}… ({took:.2f}s)"


def _write_env_file(path: Path, env: dict[str, str]) -> Path | None:
    """Write the settings a fresh process here needs, unless a `.env` of the user's is
    there (then the printed exports are the way)."""
    if path.exists() and not path.read_text().startswith(ENV_MARKER):
        _row("note", f"{path} is yours: left alone (use the exports below)")
        return None
    path.write_text(
        "\n".join([ENV_MARKER, *(f"{k}={v}" for k, v in env.items() if k != "LLM_API_KEY")]) + "\n"
    )
    _row("settings", str(path))
    return path


def _remove_env_file(path: Path | None) -> None:
    if path is not None and path.exists() and path.read_text().startswith(ENV_MARKER):
        path.unlink()


def _redacted(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{tail}"
