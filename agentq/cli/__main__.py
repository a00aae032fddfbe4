"""`python -m agentq.cli ...`: the `agentq` command without the console script."""

from agentq.cli import main

main()
