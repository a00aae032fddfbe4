"""A turn, one step a module, in the order a message travels:

`post` → `debounce` → `dispatch` (with `responders`) → `schedule` → `context` → `call` →
`finish`. Each step works in one transaction and returns `outcome.Effects`; `effects` alone
carries them out after the commit, and holds the entry points re-exported here.
"""

from agentq.turn.effects import (
    advance,
    attempt_failed,
    check_agent,
    complete,
    dispatch_due,
    fire,
    fire_taken,
    post_message,
    prepare,
    run_job,
    store_result,
    wake_agent,
)

__all__ = [
    "advance",
    "attempt_failed",
    "check_agent",
    "complete",
    "dispatch_due",
    "fire",
    "fire_taken",
    "post_message",
    "prepare",
    "run_job",
    "store_result",
    "wake_agent",
]
