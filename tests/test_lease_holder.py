"""jobs.lease_holder (issue 18): the worker process that took up a job's current claim."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import update

from agentq import turn
from agentq.client import Client
from agentq.providers import ChatResult
from agentq.store.models import Job, utcnow
from agentq.store.session import transaction
from tests.helpers import jobs_of, make_dm


def test_the_worker_that_takes_a_claim_up_holds_its_lease(db: str) -> None:
    client = Client()
    conv, user, _ = make_dm(client, settings={"debounce_seconds": 0, "max_wait_seconds": 0})
    client.post_message(conv.id, user.id, "hello")
    job_id = turn.dispatch_due(conv.id, start=True).jobs[0]
    (job,) = jobs_of(conv.id)
    assert job.status == "active" and job.lease_holder is None  # claimed, not taken up

    assert turn.prepare(job_id, job.lease_token) is not None
    (job,) = jobs_of(conv.id)
    assert job.lease_holder == f"{socket.gethostname()}/{os.getpid()}"

    # Its worker is presumed dead: the next claim holds nothing until its worker starts.
    with transaction() as s:
        s.execute(update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(1)))
    claim = turn.advance(conv.id)
    assert claim is not None
    (job,) = jobs_of(conv.id)
    assert job.lease_holder is None

    assert turn.prepare(job_id, claim.token) is not None
    assert turn.complete(job_id, ChatResult(content="hi", model="m"), claim.token)
    (job,) = jobs_of(conv.id)
    assert job.status == "completed"
    assert job.lease_holder == f"{socket.gethostname()}/{os.getpid()}"  # who ran it last
