"""The image's HEALTHCHECK: one image runs every role, so the check reads the role from
the command of PID 1 (`agentq ROLE ...`) and probes what that role serves.

- api, fake-llm: GET /healthz on its --port (8000, 8099)
- flower: GET /healthcheck on its --port (5555), under its --url-prefix
- worker: the worker answers a ping addressed to its own node name (celery@$HOSTNAME)
- beat: its heartbeat file (--heartbeat-file, AGENTQ_BEAT_HEARTBEAT_FILE, default
  /tmp/agentq-beat.heartbeat), stamped after every reconciler pass, is younger than three
  of its intervals (the interval the file records)
- anything else (db upgrade, --help): healthy while it runs

Exit 0 healthy, 1 not. Standard library only: it runs in the image as is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def option(argv: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return bool(response.status < 400)
    except OSError:
        return False


def beat_alive(argv: list[str]) -> bool:
    """The reconciler loop stamped its heartbeat within three intervals."""
    default = os.environ.get("AGENTQ_BEAT_HEARTBEAT_FILE", "/tmp/agentq-beat.heartbeat")  # noqa: S108
    path = Path(option(argv, "--heartbeat-file", default))
    try:
        age = time.time() - path.stat().st_mtime
        interval = float(json.loads(path.read_text())["interval"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no pass finished yet, or not a heartbeat
    return age <= 3 * interval


def healthy(argv: list[str]) -> bool:
    role = argv[0] if argv else ""
    if role in ("api", "fake-llm"):
        port = option(argv, "--port", "8000" if role == "api" else "8099")
        return get(f"http://127.0.0.1:{port}/healthz")
    if role == "flower":
        prefix = option(argv, "--url-prefix", "").strip("/")
        path = f"/{prefix}/healthcheck" if prefix else "/healthcheck"
        return get(f"http://127.0.0.1:{option(argv, '--port', '5555')}{path}")
    if role == "worker":
        node = f"celery@{socket.gethostname()}"
        ping = ["inspect", "ping", "-d", node, "--timeout", "10"]
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "agentq.worker", *ping],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return "pong" in proc.stdout
    if role == "beat":
        return beat_alive(argv)
    return True


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    # PID 1 is `python /usr/local/bin/agentq ROLE ...` (the entry point script)
    argv = [a for a in argv if a][1:] if argv and "python" in os.path.basename(argv[0]) else argv
    return 0 if healthy(argv[1:]) else 1


if __name__ == "__main__":
    sys.exit(main())
