"""What a benchmark run is given: its sizes, its settings, and where it may make a database."""

from __future__ import annotations

import os
from dataclasses import dataclass

#: where the benchmark may create (and afterwards drop) its own PostgreSQL database
PG_ADMIN = os.environ.get(
    "AGENTQ_BENCH_PG_ADMIN",
    os.environ.get("AGENTQ_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"),
)

#: the agentq settings a benchmark runs with (besides database, Redis and LLM)
BENCH_ENV = {
    "AGENTQ_MAX_WAIT_SECONDS": "2",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "5",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "5",
    "LLM_API_KEY": "sk-bench",
    "LLM_PROVIDER": "openai",
    "LLM_TIMEOUT": "120",  # the capacity phase may hold calls for a minute or more
}


@dataclass
class BenchConfig:
    conversations: int = 100  # DMs receiving the latency phase's messages
    rate: float = 100.0  # messages a second offered in the latency phase
    rates: tuple[float, ...] = ()  # the latency phase once at each (empty: `rate` alone)
    duration: float = 30.0  # seconds of the latency phase
    burst: int = 1000  # messages (one a conversation) of the throughput phase
    latency: float = 0.05  # fake LLM seconds an answer
    debounce: float = 0.1  # AGENTQ_DEBOUNCE_SECONDS
    pool: str = "threads"  # worker pool: threads | gevent
    concurrency: int = 200  # tasks in flight a worker process
    workers: int = 2  # agentq worker processes (each serves both queues): one a core here
    noop_tasks: int = 5000  # bare Celery no-op tasks
    capacity: int = 0  # LLM calls held at once in the capacity phase (0: skip)
    capacity_latency: float = 10.0  # fake LLM seconds an answer in the capacity phase
    producers: int = 8  # producer threads posting messages

    def offered_rates(self) -> tuple[float, ...]:
        return self.rates or (self.rate,)


#: the CI configuration: every phase, small, well under a minute of load
SHORT = BenchConfig(
    conversations=10,
    rate=20,
    duration=3,
    burst=60,
    concurrency=50,
    noop_tasks=500,
    capacity=100,
    capacity_latency=2.0,
    producers=4,
    workers=1,
)

#: the issue's targets: 100 messages/s, 2,000 calls in flight at 10 s latency
FULL = BenchConfig(capacity=2000)
