"""Run agentq's processes locally: Celery workers, the reconciler loop and the fake LLM.

Used by `agentq demo`, the benchmarks, the chaos runner and tests, so that each of
them runs the real thing: separate processes talking over real Redis and HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from agentq.runtime.broker import QUEUES


def use_env(env: Mapping[str, str]) -> None:
    """Point this process at `env`: settings, engines, Redis and Celery clients."""
    from agentq.config import reset_settings
    from agentq.runtime.broker import reset_app
    from agentq.runtime.redis import close_redis
    from agentq.store.session import dispose_engines

    os.environ.update(env)
    reset_settings()
    reset_app()
    dispose_engines()
    close_redis()


class Stack:
    """Processes sharing one environment (database, Redis, provider settings)."""

    def __init__(self, env: Mapping[str, str], log_dir: str | Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = Path(log_dir) if log_dir else None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._n = 0

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out: int | IO[bytes] = subprocess.DEVNULL
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - child keeps it
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_worker(
        self,
        *,
        queues: tuple[str, ...] = QUEUES,
        pool: str = "threads",
        concurrency: int = 20,
        name: str | None = None,
        wait: bool = True,
    ) -> str:
        """Start a Celery worker process; returns its name (for `kill`)."""
        self._n += 1
        name = name or f"worker{self._n}"
        self._spawn(
            name,
            [
                "-m",
                "celery",
                "-A",
                "agentq.worker",
                "worker",
                "-Q",
                ",".join(queues),
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        if wait:
            self.wait_ready(name)
        return name

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        """Wait until worker `name` consumes (it answers a broadcast ping)."""
        from agentq.runtime.broker import get_app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}")
            replies = get_app().control.ping(timeout=0.5) or []
            if any(name in key for reply in replies for key in reply):
                return
        raise RuntimeError(f"{name} did not come up within {timeout}s")

    def start_reconciler(self, interval: float = 1.0, name: str = "reconciler") -> str:
        self._spawn(name, ["-m", "agentq.cli", "beat", "--interval", str(interval)])
        return name

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(10)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
