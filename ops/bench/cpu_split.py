"""Where a host's CPU goes while something runs: CPU time by process group, from /proc.

Issue 19 asks where a benchmark's next bottleneck is. `agentq bench` runs workers,
PostgreSQL, Redis and its own load generator on the same cores, so the first question is
which of them uses the CPU. Run this beside the bench (or anything else):

    .venv/bin/python ops/bench/cpu_split.py --every 5 -- agentq bench --workers 2

It runs the command after `--` (or, without one, samples until Ctrl-C), and prints each
group's share of one core for every `--every` seconds and for the whole run. A group is
chosen by the process's command line; what matches nothing is "other". Linux only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

#: (group, words of which one must be in the command line), first match wins
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fake LLM", ("fake_llm",)),
    ("reconciler", ("agentq beat", " beat")),
    ("workers", ("celery", " worker")),  # agentq's, or the baselines' in their phase
    ("load generator", ("agentq bench", "agentq.bench", "turn_cost")),
    ("postgresql", ("postgres",)),
    ("redis", ("redis-server",)),
)
TICK = os.sysconf("SC_CLK_TCK")


def group_of(cmdline: str) -> str:
    for name, words in GROUPS:
        if any(w in cmdline for w in words):
            return name
    return "other"


def sample() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process, with its group."""
    seen: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone between listdir and open
            continue
        seen[int(entry)] = (group_of(cmd), (int(fields[11]) + int(fields[12])) / TICK)
    return seen


def used_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each group used between two samples (a process born since counts whole)."""
    used: dict[str, float] = defaultdict(float)
    for pid, (group, cpu) in after.items():
        used[group] += cpu - (before[pid][1] if pid in before else 0.0)
    return used


def line(label: str, used: dict[str, float], seconds: float) -> str:
    shares = "  ".join(f"{g} {used.get(g, 0.0) / seconds:4.2f}" for g in names())
    return f"{label:>9}  {shares}  (cores busy {sum(used.values()) / seconds:4.2f})"


def names() -> list[str]:
    return [g for g, _ in GROUPS] + ["other"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=5.0, help="seconds a line (default 5)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    child = subprocess.Popen(command) if command else None
    print("share of one core by group:", ", ".join(names()), file=sys.stderr)
    # Sampled every second and summed, so a process that lives a few seconds still counts
    # (up to its last second).
    total: dict[str, float] = defaultdict(float)
    window: dict[str, float] = defaultdict(float)
    last = sample()
    started = tick = time.monotonic()
    try:
        while child is None or child.poll() is None:
            time.sleep(1.0)
            now = sample()
            for group, cpu in used_between(last, now).items():
                total[group] += cpu
                window[group] += cpu
            last, at = now, time.monotonic()
            if at - tick >= args.every:
                print(line(f"{at - started:.0f}s", window, at - tick), file=sys.stderr)
                window, tick = defaultdict(float), at
    except KeyboardInterrupt:
        pass
    print(line("whole run", total, time.monotonic() - started), file=sys.stderr)
    return child.returncode if child is not None else 0


if __name__ == "__main__":
    sys.exit(main())
