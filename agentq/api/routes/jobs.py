"""`/v1/jobs`: list, inspect and retry the jobs of a tenant's conversations."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from agentq.api.auth import Acting, Caller
from agentq.api.models import JobPage
from agentq.api.routes.conversations import MAX_CURSOR, MAX_PAGE
from agentq.ops import jobs, tenancy
from agentq.ops.tenancy import own_job
from agentq.schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobStatus = Literal["waiting", "active", "completed", "failed", "delayed", "cancelled"]


@router.get("", response_model=JobPage)
def list_jobs(
    who: Caller,
    status: JobStatus | None = None,
    conversation_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0,
) -> JobPage:
    """Jobs, newest first, optionally of one status and one conversation."""
    items = tenancy.list_jobs(
        who, status=status, conversation_id=conversation_id, limit=limit, offset=offset
    )
    return JobPage(items=items, next_offset=offset + limit if len(items) == limit else None)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: uuid.UUID, who: Caller) -> JobOut:
    own_job(who, job_id)
    return jobs.get_job(job_id)


@router.post("/{job_id}/retry", response_model=JobOut)
def retry_job(job_id: uuid.UUID, who: Acting) -> JobOut:
    """Run a failed or cancelled job again with fresh attempts (409 for any other state)."""
    own_job(who, job_id)
    return jobs.retry_job(job_id)
