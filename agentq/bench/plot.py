"""`agentq bench --plot`: the latency split against offered load, and the throughput
ratios to the baselines, drawn from a run's result (or a saved `--json` output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the parts of a turn's latency drawn, in the order of a turn (result key, label)
SPLIT = (
    ("debounce", "debounce wait"),
    ("queue", "queue wait"),
    ("llm", "LLM"),
    ("completion", "completion"),
    ("overhead", "orchestration overhead"),
)
#: the ratios drawn (result key, label)
RATIOS = (
    ("turns_vs_pipeline", "agentq turns/s\n÷ pipeline msg/s"),
    ("turns_vs_noop", "agentq turns/s\n÷ Celery no-op/s"),
    ("pipeline_vs_noop", "pipeline msg/s\n÷ Celery no-op/s"),
)
MISSING_MATPLOTLIB = (
    "agentq bench --plot needs matplotlib: pip install 'agentq-queue[plot]' "
    "(or pip install 'matplotlib>=3.8')"
)


class PlotError(ValueError):
    """No plot: matplotlib is missing, or the result is not a bench result."""


def require_matplotlib() -> None:
    """Fail before a run whose plot could not be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(MISSING_MATPLOTLIB) from None


def load_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PlotError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(result, dict):
        raise PlotError(f"{path}: not the output of `agentq bench --json`")
    return result


def latency_runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The latency split at each offered rate, lowest first (older results: the one rate):
    [{"offered_rate": 20.0, "queue": {"p50": 5.3, "p95": 40.1}, ...}]."""
    try:
        aq = result["agentq"]
        runs = [
            {
                "offered_rate": float(run["offered_rate"]),
                **{k: {p: float(run[k][p]) for p in ("p50", "p95")} for k, _ in SPLIT},
            }
            for run in aq.get("latency_by_rate") or [aq["latency"]]
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlotError(
            f"not the output of `agentq bench --json`: no agentq.latency figures ({exc!r})"
        ) from None
    return sorted(runs, key=lambda run: run["offered_rate"])


def plot(result: dict[str, Any], path: Path) -> None:
    """Draw `result` into the PNG `path`: latency split p50 | p95 against offered load,
    and the throughput ratios to the baselines."""
    runs = latency_runs(result)
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, (p50, p95, bars) = plt.subplots(
        1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [1, 1, 0.8]}
    )
    p95.sharey(p50)
    rates = [run["offered_rate"] for run in runs]
    for ax, pct in ((p50, "p50"), (p95, "p95")):
        for key, label in SPLIT:
            # log scale: a zero (no turns) has no place on it
            ys = [max(run[key][pct], 0.1) for run in runs]
            ax.plot(rates, ys, "o-", label=label)
        ax.set_yscale("log")
        ax.set_xlabel("offered load (messages/s)")
        ax.set_ylabel("ms")
        ax.set_title(f"latency split, {pct}")
        ax.grid(True, which="both", alpha=0.3)
    p50.legend(fontsize=8)
    _ratios(bars, result)
    c = result.get("config", {})
    fig.suptitle(
        f"agentq bench: pool={c.get('pool', '?')} x{c.get('concurrency', '?')}, "
        f"workers={c.get('workers', '?')}, LLM {c.get('latency', '?')}s, "
        f"debounce {c.get('debounce', '?')}s"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _ratios(ax: Any, result: dict[str, Any]) -> None:
    ax.set_title("throughput ratios to the baselines")
    base, ratios = result.get("baseline") or {}, result.get("ratios") or {}
    if "skipped" in base or not ratios:
        reason = base.get("skipped", "no ratios in this result")
        ax.text(0.5, 0.5, f"baselines skipped:\n{reason}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return
    shown = [(label, float(ratios[key])) for key, label in RATIOS if key in ratios]
    xs = range(len(shown))
    ax.bar(xs, [v for _, v in shown], color=["tab:blue", "tab:orange", "tab:gray"][: len(shown)])
    for x, (_, v) in zip(xs, shown, strict=True):
        ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom")
    # the target (issue 7) is on the first bar only
    ax.hlines(0.5, -0.45, 0.45, color="tab:red", linestyle=":", label="target ≥ 0.5")
    ax.set_xticks(list(xs), [label for label, _ in shown], fontsize=8)
    thr = result.get("agentq", {}).get("throughput", {})
    ax.set_xlabel(
        f"burst: agentq {thr.get('turns_per_s', '?')} turns/s, pipeline "
        f"{base.get('pipeline_messages_per_s', '?')} msg/s, no-op "
        f"{base.get('noop_tasks_per_s', '?')} tasks/s",
        fontsize=8,
    )
    ax.legend(fontsize=8)
