"""One benchmark run: every phase, the ratios between them, and the report."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agentq.bench.baseline import baseline_phases
from agentq.bench.config import BENCH_ENV, PG_ADMIN, BenchConfig
from agentq.bench.measure import Phase, environment
from agentq.bench.phases import agentq_phases, capacity_phase
from agentq.store.scratch import create_database, drop_database


def run_bench(
    cfg: BenchConfig, database_url: str | None = None, log_dir: str | None = None
) -> dict[str, Any]:
    """Run every phase of `cfg` and return the figures (see the module docstring)."""
    from agentq.runtime.embedded import EmbeddedRedis
    from agentq.store.migrate import upgrade
    from agentq.testing.fake_llm import FakeLLMConfig, FakeLLMServer

    logs = Path(log_dir or tempfile.mkdtemp(prefix="agentq-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    own_db = database_url is None
    url = database_url or create_database(PG_ADMIN, prefix="agentq_bench")
    try:
        setup = Phase("setup: database, Redis, fake LLM")
        upgrade(url)
        with (
            EmbeddedRedis() as redis_server,
            FakeLLMServer(FakeLLMConfig(latency=cfg.latency)) as llm,
        ):
            setup.done()
            env = {
                **BENCH_ENV,
                "AGENTQ_DATABASE_URL": url,
                "AGENTQ_REDIS_URL": redis_server.url,
                "AGENTQ_DEBOUNCE_SECONDS": str(cfg.debounce),
                "LLM_ENDPOINT": llm.url,
                # The bench's agents go past the default profile's limits on purpose.
                "AGENTQ_MODEL_PROFILES": json.dumps(
                    {
                        "default": {
                            "provider": "openai",
                            "endpoint": llm.url,
                            "model": "fake-model",
                            "max_tokens": 1024,
                            "timeout": 120,
                            "max_concurrent_jobs": 100_000,
                            "rate_limit_per_minute": 1_000_000,
                        }
                    }
                ),
            }
            with environment(env):
                result: dict[str, Any] = {"config": asdict(cfg), "log_dir": str(logs)}
                result["agentq"] = agentq_phases(cfg, env, llm, logs)
                with Phase("baselines: bare Celery no-op and the hand-written pipeline"):
                    result["baseline"] = baseline_phases(cfg, env, logs)
                if cfg.capacity:
                    with Phase(f"capacity: {cfg.capacity} LLM calls held by one worker"):
                        result["capacity"] = capacity_phase(cfg, env, llm, logs)
    finally:
        if own_db:
            drop_database(url, PG_ADMIN)
    result["ratios"] = ratios(result)
    return result


def ratios(r: dict[str, Any]) -> dict[str, float]:
    base, aq = r["baseline"], r["agentq"]

    def div(a: float, b: float) -> float:
        return round(a / b, 3) if b else 0.0

    if "skipped" in base:
        return {}
    return {
        "turns_vs_pipeline": div(aq["throughput"]["turns_per_s"], base["pipeline_messages_per_s"]),
        "turns_vs_noop": div(aq["throughput"]["turns_per_s"], base["noop_tasks_per_s"]),
        "pipeline_vs_noop": div(base["pipeline_messages_per_s"], base["noop_tasks_per_s"]),
    }


def format_report(r: dict[str, Any]) -> str:
    """The human-readable table."""
    lat, thr, base = r["agentq"]["latency"], r["agentq"]["throughput"], r["baseline"]
    c = r["config"]
    lines = [
        f"agentq bench  pool={c['pool']} x{c['concurrency']}  workers={c['workers']}  "
        f"llm latency={c['latency']}s  debounce={c['debounce']}s",
        f"latency phase: {lat['messages']} messages at {lat['offered_rate']}/s over "
        f"{c['conversations']} conversations -> {lat['turns']} turns, {lat['turns_per_s']} turns/s",
        f"{'ms':<22}{'p50':>9}{'p95':>9}{'p99':>9}",
    ]
    for k, label in (
        ("e2e", "end-to-end"),
        ("debounce", "debounce wait"),
        ("queue", "queue wait"),
        ("llm", "LLM"),
        ("completion", "completion"),
        ("overhead", "orchestration overhead"),
        ("fire_error", "debounce fire error"),
        ("api_post_ms", "post_message (API)"),
    ):
        p = lat[k]
        lines.append(f"{label:<22}{p['p50']:>9.1f}{p['p95']:>9.1f}{p['p99']:>9.1f}")
    runs = r["agentq"].get("latency_by_rate") or [lat]
    if len(runs) > 1:
        lines.append(
            f"{'by offered rate':<22}{'turns/s':>9}{'e2e p50':>9}{'p95':>9}"
            f"{'overhead p50':>14}{'p95':>9}"
        )
        for run in runs:
            e2e, ovh = run["e2e"], run["overhead"]
            lines.append(
                f"{run['offered_rate']:>14.1f} msg/s{run['turns_per_s']:>11.1f}{e2e['p50']:>9.1f}"
                f"{e2e['p95']:>9.1f}{ovh['p50']:>14.1f}{ovh['p95']:>9.1f}"
            )
    lines += [
        f"peak LLM calls in flight / worker: {lat['peak_llm_in_flight_per_worker']:g} (latency), "
        f"{thr['peak_llm_in_flight_per_worker']:g} (throughput)",
        f"worker RSS peak: {r['agentq']['worker_rss_mb']} MB",
        f"throughput: {thr['turns']} turns, {thr['turns_per_s']} turns/s",
    ]
    if "skipped" in base:
        lines.append(f"baselines skipped: {base['skipped']}")
    else:
        lines += [
            f"bare Celery no-op: {base['noop_tasks_per_s']} tasks/s; hand-written pipeline: "
            f"{base['pipeline_messages_per_s']} messages/s",
            "ratios: " + ", ".join(f"{k}={v}" for k, v in r["ratios"].items()),
        ]
    if "capacity" in r:
        cap = r["capacity"]
        lines.append(
            f"capacity: {cap['calls']} calls at {cap['llm_latency_s']}s -> peak in flight "
            f"{cap['peak_in_flight']}, worker RSS {cap['worker_rss_mb']} MB, lost {cap['lost']}, "
            f"{cap['seconds']}s"
        )
    return "\n".join(lines)
