"""Small measuring tools of the benchmark: percentiles, peak memory, waiting, rates."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Phase:
    """Says on stderr when a step of the run starts and ends (`done()`, or the end of a
    `with`): a full run takes minutes, and stdout keeps only the report. One line each,
    so the printing weighs nothing in what is measured."""

    def __init__(self, what: str) -> None:
        self.what, self.t0 = what, time.monotonic()
        print(f"bench: {what} ...", file=sys.stderr, flush=True)

    def done(self) -> None:
        took = time.monotonic() - self.t0
        print(f"bench: {self.what}: done in {took:.1f}s", file=sys.stderr, flush=True)

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.done()


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) and the count; zeros for no values."""
    if not values:
        return {"n": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    s = sorted(values)

    def rank(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, int(p / 100 * len(s) + 0.5) - 1))], 2)

    return {"n": len(s), "p50": rank(50), "p95": rank(95), "p99": rank(99)}


class RSSSampler:
    """Peak resident memory of some processes (their children included), sampled."""

    def __init__(self, pids: Callable[[], list[int]], every: float = 0.25) -> None:
        self.pids, self.every = pids, every
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self, pid: int) -> int:
        try:
            import psutil

            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs)
        except ImportError:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except Exception:  # noqa: BLE001 - the process ended
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids():
                self.peak[pid] = max(self.peak.get(pid, 0), self._rss(pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self) -> float:
        return round(max(self.peak.values(), default=0) / 2**20, 1)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    from agentq.testing.stack import use_env

    saved = {k: os.environ.get(k) for k in env}
    use_env(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        use_env({})


def wait_for(fn: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def span_rate(turns: list[dict[str, float]]) -> float:
    if not turns:
        return 0.0
    span = max(t["replied"] for t in turns) - min(t["first"] for t in turns)
    return round(len(turns) / span, 1) if span > 0 else 0.0


def worker_pids(stack: Any) -> list[int]:
    return [p.pid for n, p in stack.procs.items() if n.startswith("worker") and p.poll() is None]
