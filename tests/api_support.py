"""Running `agentq api` for the tests: a uvicorn subprocess on a free port, and keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def api_server(env: Mapping[str, str], log_dir: Path) -> Iterator[Server]:
    """`agentq api` in a subprocess with `env`, up and answering /healthz."""
    port = free_port()
    log = log_dir / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentq.cli",
                "api",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"api exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("api did not come up within 30s")
            time.sleep(0.1)
        yield Server(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli_create_key(env: Mapping[str, str], name: str | None = None) -> str:
    """A new tenant's key, made with `agentq keys create` as an operator would."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentq.cli",
            "keys",
            "create",
            "--name",
            name or f"tenant-{uuid.uuid4().hex[:8]}",
            "--json",
        ],
        env={**os.environ, **env},
        capture_output=True,
        check=True,
        timeout=60,
    )
    return str(json.loads(out.stdout)["key"])
