"""The long-running processes: `agentq worker`, `beat`, `reconcile`, `api`, `flower`."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Annotated

import typer

#: short names of the queues `agentq worker -Q` accepts (full queue names work too)
QUEUE_ALIASES = {"control": "agentq.control", "llm": "agentq.llm"}

api_app = typer.Typer(help="Serve the HTTP API with uvicorn.")


@api_app.callback(invoke_without_command=True)
def api(
    host: Annotated[str | None, typer.Option(help="Address (default: AGENTQ_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: AGENTQ_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the API (`/v1`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json`).

    It logs as the workers do (JSON lines unless on a terminal, ids, secrets redacted):
    uvicorn's own loggers go through agentq's handler too."""
    import uvicorn

    from agentq.api.settings import api_settings
    from agentq.logging import setup_logging

    setup_logging(log_level.upper())
    s = api_settings()
    uvicorn.run(
        "agentq.api.app:create_app",
        factory=True,
        host=host or s.host,
        port=port or s.port,
        workers=workers,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers propagate to the root handler set up above
        timeout_graceful_shutdown=5,
    )


def worker(
    queues: Annotated[
        str,
        typer.Option("--queues", "-Q", help="Comma-separated: control, llm (or full queue names)."),
    ] = "control,llm",
    pool: Annotated[
        str, typer.Option("--pool", "-P", help="threads (default), gevent, prefork or solo.")
    ] = "threads",
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Tasks in flight in this process.")
    ] = 50,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    hostname: Annotated[str | None, typer.Option("--name", "-n", help="Worker node name.")] = None,
) -> None:
    """Run a Celery worker. LLM calls wait on the network: use a threads or gevent pool."""
    from agentq.worker import app as celery_app

    names = [QUEUE_ALIASES.get(q.strip(), q.strip()) for q in queues.split(",") if q.strip()]
    argv = [
        "worker",
        "-Q",
        ",".join(names),
        "-P",
        pool,
        "-c",
        str(concurrency),
        "--loglevel",
        loglevel,
    ]
    if hostname:
        argv += ["-n", hostname]
    celery_app.worker_main(argv)


#: where `agentq beat` stamps each pass by default (the probes read it)
BEAT_HEARTBEAT_FILE = "/tmp/agentq-beat.heartbeat"  # noqa: S108 - an emptyDir in Kubernetes


def beat(
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between passes (default: AGENTQ_RECONCILE_INTERVAL_SECONDS)."),
    ] = None,
    heartbeat_file: Annotated[
        str,
        typer.Option(
            envvar="AGENTQ_BEAT_HEARTBEAT_FILE",
            help="Stamped after every pass; the liveness probes read its age.",
        ),
    ] = BEAT_HEARTBEAT_FILE,
) -> None:
    """Run the reconciler: re-drive from the database whatever is unfinished, every interval.

    The only route that runs it (there is no Celery beat schedule). After each pass, failed
    or not, it rewrites `--heartbeat-file` with the time, the interval and the outcome: a
    loop that hangs stops stamping it, and the probes (ops/docker/healthcheck.py) restart
    it once the file is older than three intervals. A failed pass is logged and retried."""
    from agentq.config import get_settings
    from agentq.logging import setup_logging
    from agentq.ops.reconcile import reconcile_once

    setup_logging("INFO")
    every = interval or get_settings().reconcile_interval_seconds
    log = logging.getLogger("agentq.beat")
    log.info("reconciler running every %.1fs", every)
    while True:
        started = time.monotonic()
        outcome = "ok"
        try:
            reconcile_once()
        except Exception as exc:  # noqa: BLE001 - a DB or Redis outage: try again next pass
            outcome = f"failed: {type(exc).__name__}"
            log.warning("reconcile pass failed: %s", type(exc).__name__)
        stamp_heartbeat(heartbeat_file, every, outcome, log)
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def stamp_heartbeat(path: str, interval: float, outcome: str, log: logging.Logger) -> None:
    """Replace `path` whole (a probe never reads half a file); a failure is logged only."""
    body = json.dumps({"at": time.time(), "interval": interval, "pass": outcome})
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(body + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the heartbeat file %s: %s", path, type(exc).__name__)


def reconcile(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Run one reconciler pass now and say what it re-drove."""
    from agentq.ops.reconcile import reconcile_once

    report = reconcile_once().as_dict()
    if as_json:
        typer.echo(json.dumps(report))
    else:
        for k, v in report.items():
            typer.echo(f"{k:<18} {v}")


def flower(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5555,
    address: Annotated[
        str, typer.Option(help="Address to bind (anything but loopback needs basic auth).")
    ] = "127.0.0.1",
    basic_auth: Annotated[
        str | None, typer.Option(help="user:password[,user2:password2]; default FLOWER_BASIC_AUTH.")
    ] = None,
    url_prefix: Annotated[
        str | None,
        typer.Option(help="Serve under this path, e.g. flower (behind a reverse proxy)."),
    ] = None,
    extra: Annotated[
        list[str] | None, typer.Argument(help="More flower options, after --.")
    ] = None,
) -> None:
    """Start Flower against the agentq workers (Celery app `agentq.worker`).

    Flower can revoke tasks and shut workers down: on any address but loopback it starts
    only with basic auth (`--basic-auth` or FLOWER_BASIC_AUTH), and never with a
    well-known default password."""
    basic_auth = basic_auth or os.environ.get("FLOWER_BASIC_AUTH") or None
    problem = _flower_auth_problem(address, basic_auth)
    if problem:
        typer.echo(f"agentq flower: {problem}", err=True)
        raise typer.Exit(2)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "agentq.worker",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    if url_prefix:
        argv.append(f"--url-prefix={url_prefix.strip('/')}")
    argv += extra or []
    _enable_task_events()
    sys.stdout.flush()
    os.execv(sys.executable, argv)


#: passwords that are no secret (the old compose default among them)
_KNOWN_PASSWORDS = frozenset({"change-me", "changeme", "admin", "password", "flower"})


def _flower_auth_problem(address: str, basic_auth: str | None) -> str | None:
    """Why Flower must not start with these settings, or None."""
    if basic_auth is None:
        if address in ("127.0.0.1", "localhost", "::1"):
            return None
        return (
            f"Flower on {address} needs basic auth: set FLOWER_BASIC_AUTH=user:password "
            "(or --basic-auth), or bind --address 127.0.0.1"
        )
    for pair in basic_auth.split(","):
        user, _, password = pair.partition(":")
        if not user or not password:
            return "basic auth must be user:password[,user2:password2]"
        if password.lower() in _KNOWN_PASSWORDS:
            return f"the password of {user!r} is a well-known default; choose another"
    return None


def _enable_task_events() -> None:
    """Have the running workers send task events now (Flower asks again every 5 s, which
    new workers need; the first ask would come only after its first interval)."""
    from agentq.runtime.broker import get_app

    try:
        get_app().control.enable_events()
    except Exception as exc:  # noqa: BLE001 - Flower asks again itself
        typer.echo(f"agentq flower: task events not enabled yet ({type(exc).__name__})", err=True)
