"""What a chaos run is given (`ChaosConfig`), the settings it runs agentq with, and what it
reports (`Anomalies`, `ChaosReport`)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

#: where the runner may create and drop its own database (a local server, trust auth)
DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
#: a key the run gives the provider, then looks for in logs and task messages
CHAOS_API_KEY = "sk-chaos-SECRET-7f3a9c1e5b"
#: HTTP timeout of one provider request during the run; the slow spells hang past it
LLM_TIMEOUT = 2.0
#: every message body carries this, so that the run can look for bodies where none belong
BODY_MARKER = "where should I travel"
#: settings that make failures and recovery quick enough to watch many of them in a run
CHAOS_ENV = {
    "AGENTQ_DEBOUNCE_SECONDS": "0.3",
    "AGENTQ_MAX_WAIT_SECONDS": "1.5",
    # longer than one attempt can take (LLM_MAX_RETRIES+1 requests of LLM_TIMEOUT each)
    "AGENTQ_JOB_LEASE_SECONDS": "15",
    "AGENTQ_CLAIM_PICKUP_SECONDS": "15",
    "AGENTQ_RECONCILE_INTERVAL_SECONDS": "1",
    "AGENTQ_RECONCILE_GRACE_SECONDS": "1",
    "AGENTQ_RETRY_BACKOFF_SECONDS": "0.5",
    "AGENTQ_RETRY_BACKOFF_MAX_SECONDS": "2",
    "LLM_PROVIDER": "openai",
    "LLM_TIMEOUT": str(LLM_TIMEOUT),
    "LLM_MAX_RETRIES": "3",
    "LLM_BACKOFF_BASE": "0.1",
    "LLM_BACKOFF_MAX": "2",
    "LLM_API_KEY": CHAOS_API_KEY,
}


@dataclass
class ChaosConfig:
    messages: int = 300
    conversations: int = 30
    #: fraction of conversations that are channels with two agents (the rest are DMs)
    channel_fraction: float = 0.2
    workers: int = 3
    worker_concurrency: int = 20
    #: seconds over which the producers spread the messages
    duration: float = 30.0
    producers: int = 4
    #: seconds between SIGKILLs of a random worker (0: none)
    kill_every: float = 5.0
    flushall: bool = True
    redis_restart: bool = True
    storms: bool = True
    slow: bool = True
    #: restart the machine's PostgreSQL cluster: it is shared, so off unless asked for
    pg_restart: bool = False
    #: how long to wait for the system to settle after the load
    settle_timeout: float = 300.0
    seed: int | None = None
    database_url: str | None = None
    keep_db: bool = False
    log_dir: str | None = None
    llm_latency: float = 0.2
    llm_jitter: float = 0.4


@dataclass
class Anomalies:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    overlapping: int = 0
    inconsistent: int = 0
    failed_visible: int = 0
    completed_jobs: int = 0
    accepted_messages: int = 0
    #: a few examples per kind, for whoever has to debug a non-zero count
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(text)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.reordered or self.overlapping or self.inconsistent
        )


@dataclass
class ChaosReport:
    config: dict[str, Any]
    anomalies: Anomalies
    kills: int = 0
    worker_restarts: int = 0
    unexpected_worker_exits: int = 0
    faults: list[str] = field(default_factory=list)
    post_errors: int = 0
    load_seconds: float = 0.0
    settle_seconds: float = 0.0
    settled: bool = False
    #: seconds from FLUSHALL until everything accepted before it was finished
    flushall_recovery_seconds: float | None = None
    #: seconds from FLUSHALL until the first job finished after it
    flushall_first_completion_seconds: float | None = None
    redis_restart_recovery_seconds: float | None = None
    llm_requests: dict[str, int] = field(default_factory=dict)
    #: where the API key or a message body showed up (broker messages, worker logs)
    leaks: list[str] = field(default_factory=list)
    redis_scans: int = 0
    log_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.settled and self.anomalies.ok and not self.leaks

    def lines(self) -> list[str]:
        a = self.anomalies
        c = self.config
        out = [
            f"messages          {a.accepted_messages} accepted over {c['conversations']} "
            f"conversations ({self.post_errors} post errors retried)",
            f"jobs              {a.completed_jobs} completed, {a.failed_visible} failed visibly",
            f"kills             {self.kills} SIGKILLs, {self.worker_restarts} workers restarted, "
            f"{self.unexpected_worker_exits} unexpected exits",
            f"faults            {', '.join(self.faults) or 'none'}",
            f"llm requests      {json.dumps(self.llm_requests, sort_keys=True)}",
            f"load              {self.load_seconds:.1f}s, settled "
            f"{'in ' + format(self.settle_seconds, '.1f') + 's' if self.settled else 'NEVER'}",
            f"flushall recovery {_secs(self.flushall_recovery_seconds)} (first completion after "
            f"flush: {_secs(self.flushall_first_completion_seconds)})",
            f"redis restart     recovered in {_secs(self.redis_restart_recovery_seconds)}",
            f"secrets/bodies    {len(self.leaks)} leaks ({self.redis_scans} broker snapshots "
            "and every worker log searched)",
            f"lost              {a.lost}",
            f"duplicated        {a.duplicated}",
            f"reordered         {a.reordered}",
            f"overlapping       {a.overlapping}",
            f"inconsistent      {a.inconsistent}",
            f"failed_visible    {a.failed_visible}",
        ]
        out.extend(f"  leak: {leak}" for leak in self.leaks[:5])
        for kind, examples in a.examples.items():
            for ex in examples:
                out.append(f"  {kind}: {ex}")
        out.append(f"logs              {self.log_dir}")
        out.append("RESULT            " + ("PASS" if self.ok else "FAIL"))
        return out

    def as_dict(self) -> dict[str, Any]:
        self.anomalies.examples = dict(self.anomalies.examples)
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"
