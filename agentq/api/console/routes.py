"""The console's pages and actions under `/console` (see `agentq.api.console`), one
module a page: the login (`login`), conversations and their timelines (`conversations`),
agents and providers (`agents`), jobs (`jobs`), the search and Flower (`find`)."""

from __future__ import annotations

from fastapi import APIRouter

from agentq.api.console import agents, conversations, find, jobs, login

router = APIRouter(include_in_schema=False)
for _page in (login, conversations, agents, jobs, find):
    router.include_router(_page.router, prefix="/console")

__all__ = ["router"]
