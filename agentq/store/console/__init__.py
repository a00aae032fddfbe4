"""Reads of the operator console (`agentq.api.console`), one module a page: the
conversation list (`conversations`), a conversation's timeline (`timeline`), agents
(`agents`), failed jobs and recent outcomes per model profile (`jobs`), the filters'
pickers and the search box (`lookup`); the rows they return (`rows`); and the bulk
seeding of ops/scripts/console_scale.py (`seed`, not re-exported).

Every list pages by keyset (the newest first, continued after the last row shown), so a
page costs the same at row 100,000 as at row 1. Nothing here returns a key; message
bodies only where the console shows a conversation.
"""

from agentq.store.console.agents import agents
from agentq.store.console.conversations import STATES, conversation, conversations
from agentq.store.console.jobs import failed_job_ids, failed_jobs, job, profile_outcomes
from agentq.store.console.lookup import agent_names, find, tenants
from agentq.store.console.rows import (
    AgentRow,
    ConversationRow,
    JobRow,
    MessageRow,
    ProfileOutcomes,
    Timeline,
    TimelineJob,
)
from agentq.store.console.timeline import ATTEMPT_EVENTS, timeline

__all__ = [
    "ATTEMPT_EVENTS",
    "STATES",
    "AgentRow",
    "ConversationRow",
    "JobRow",
    "MessageRow",
    "ProfileOutcomes",
    "Timeline",
    "TimelineJob",
    "agent_names",
    "agents",
    "conversation",
    "conversations",
    "failed_job_ids",
    "failed_jobs",
    "find",
    "job",
    "profile_outcomes",
    "tenants",
    "timeline",
]
