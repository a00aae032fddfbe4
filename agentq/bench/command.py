"""The `agentq bench` command: its options, and the run they start."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer


def bench(
    short: Annotated[bool, typer.Option("--short", help="The small CI configuration.")] = False,
    conversations: Annotated[
        int | None, typer.Option(help="Conversations of the latency phase.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages a second in the latency phase.")
    ] = None,
    rates: Annotated[
        str | None,
        typer.Option(help="Run the latency phase at each of these rates, e.g. 10,20,40."),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of the latency phase.")] = None,
    burst: Annotated[int | None, typer.Option(help="Messages of the throughput phase.")] = None,
    latency: Annotated[float | None, typer.Option(help="Fake LLM latency, seconds.")] = None,
    debounce: Annotated[float | None, typer.Option(help="Debounce seconds.")] = None,
    pool: Annotated[str | None, typer.Option(help="Worker pool: threads or gevent.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Tasks in flight a worker.")] = None,
    workers: Annotated[int | None, typer.Option(help="agentq worker processes.")] = None,
    noop_tasks: Annotated[int | None, typer.Option(help="Bare Celery no-op tasks.")] = None,
    capacity: Annotated[
        int | None, typer.Option(help="LLM calls in flight to test (0: skip).")
    ] = None,
    capacity_latency: Annotated[float | None, typer.Option(help="Fake LLM latency there.")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL URL (default: AGENTQ_DATABASE_URL if PostgreSQL, else a new database)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Draw the latency split and the ratios into this PNG (extra: plot)."),
    ] = None,
    from_json: Annotated[
        Path | None,
        typer.Option("--from", help="With --plot: redraw from a saved --json output, run nothing."),
    ] = None,
) -> None:
    """Benchmark agentq against bare Celery on the same Redis (see ops/bench/README.md)."""
    from agentq.bench.config import FULL, SHORT
    from agentq.bench.plot import PlotError, load_result, require_matplotlib
    from agentq.bench.run import format_report, run_bench

    if plot is not None:
        try:
            require_matplotlib()  # before a run, not after ten minutes of it
        except PlotError as exc:
            raise typer.BadParameter(str(exc), param_hint="--plot") from None
    if from_json is not None:
        if plot is None:
            raise typer.BadParameter(
                "redraws a plot: give --plot FILE.png too", param_hint="--from"
            )
        try:
            result = load_result(from_json)
        except PlotError as exc:
            raise typer.BadParameter(str(exc), param_hint="--from") from None
        draw(result, plot, "--from")
        return
    cfg = SHORT if short else FULL
    given: dict[str, Any] = {
        k: v
        for k, v in dict(
            conversations=conversations,
            rate=rate,
            duration=duration,
            burst=burst,
            latency=latency,
            debounce=debounce,
            pool=pool,
            concurrency=concurrency,
            workers=workers,
            noop_tasks=noop_tasks,
            capacity=capacity,
            capacity_latency=capacity_latency,
            rates=parse_rates(rates) if rates is not None else None,
        ).items()
        if v is not None
    }
    cfg = replace(cfg, **given)
    env_url = os.environ.get("AGENTQ_DATABASE_URL", "")
    url = database_url or (env_url if env_url.startswith("postgresql") else None)
    # Stopped (Ctrl-C or SIGTERM), still stop its processes and drop its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run_bench(cfg, url)
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))
    if plot is not None:
        draw(result, plot, "--plot")


def parse_rates(text: str) -> tuple[float, ...]:
    """`10,20,40` -> (10.0, 20.0, 40.0); anything else names --rates."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        rates = ()
    if not rates or any(r <= 0 for r in rates):
        raise typer.BadParameter(
            f"{text!r}: a comma list of messages a second above 0, e.g. 10,20,40",
            param_hint="--rates",
        )
    return rates


def draw(result: dict[str, Any], path: Path, source: str) -> None:
    """Plot `result` into `path`; a bad result is an error of option `source`."""
    from agentq.bench.plot import PlotError, plot

    try:
        plot(result, path)
    except PlotError as exc:
        raise typer.BadParameter(str(exc), param_hint=source) from None
    # stderr: stdout may be the JSON being saved
    typer.echo(f"bench: plot written to {path}", err=True)
