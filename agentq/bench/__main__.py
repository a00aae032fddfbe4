"""`python -m agentq.bench ...`: `agentq bench` without the console script."""

import typer

from agentq.bench.command import bench

typer.run(bench)
