"""What happens next: the one place that acts once a step's transaction has committed.

A step (`post`, `dispatch`, `schedule`, `call`, `finish`) runs inside one transaction and
returns `Effects`; nothing it decides reaches Redis or Celery before its commit. `run`
carries them out in this order, the whole table of a turn's "what next":

==================================  =======================================================
effect                              what follows the commit
==================================  =======================================================
events                              published (pub/sub, in-process handlers); a crash
                                    before this leaves them to the reconciler
cancelled (interrupt, rollback)     the running job's worker is told to stop; its slot
                                    is given back
release                             the finished job's agent slot is given back
responded_after                     the response-time metric
claim                               `agentq.run_job` goes to the LLM pool
due                                 the debounce timer is armed for the window's end
wake                                `agentq.advance` for each conversation a freed slot
                                    lets start
wake_agent                          the conversations parked for the agent are advanced,
                                    as many as it has free slots
check_agent                         the conversation parked at its agent's limits: the
                                    agent's one check (`agentq.wake_agent`) is armed
advance_in                          `agentq.advance` again after a countdown (a retry
                                    delay)
fail                                the job that cannot start fails visibly (own step)
then = DISPATCH                     due messages are dispatched and the next job claimed,
                                    in one transaction
then = ADVANCE                      the conversation's next job is claimed
==================================  =======================================================

Below `run`, the entry points: each is one step (or two in one transaction) and `run`.
Tasks, the client, the API and the operator commands call these, never a step directly.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from agentq import ids
from agentq.clock import utcnow
from agentq.config import get_settings
from agentq.errors import ProviderError
from agentq.providers import ChatResult
from agentq.runtime import answers, breaker, broker, bus, calls, limits, metrics, signals, timers
from agentq.schemas import PostedMessage
from agentq.states import JobStatus
from agentq.store import contexts, conversations
from agentq.store import jobs as stored_jobs
from agentq.store.session import DatabaseError, Tx, transaction
from agentq.turn import call, dispatch, finish, post, schedule
from agentq.turn.call import Call
from agentq.turn.outcome import Claim, Effects, Then

log = logging.getLogger(__name__)


def run(effects: Effects | None) -> None:
    """Carry out `effects` (see the table above), and the steps they call for."""
    queue: deque[Effects | None] = deque([effects])
    while queue:
        e = queue.popleft()
        if e is None:
            continue
        bus.publish(e.events)
        for job_id, token in e.cancelled:
            _cancel(job_id, token)
        for agent_id, job_id in e.release:
            _release(agent_id, job_id)
        if e.responded_after is not None:
            metrics.responded(e.responded_after)
        if e.claim is not None:
            broker.send(broker.RUN_JOB, e.claim.job_id, e.claim.token)
        if e.due is not None and e.conversation_id is not None:
            timers.arm(e.conversation_id, e.due)
        for conv_id in e.wake:
            broker.send(broker.ADVANCE, conv_id)
        if e.wake_agent is not None:
            wake_agent(e.wake_agent, exclude=e.conversation_id)
        if e.check_agent is not None:
            timers.arm_agent_check(*e.check_agent)
        if e.advance_in is not None:
            broker.send(broker.ADVANCE, e.conversation_id, countdown=e.advance_in)
        if e.fail is not None:
            queue.append(_fail(*e.fail))
        if e.conversation_id is not None and e.then is Then.DISPATCH:
            queue.append(_dispatch(e.conversation_id, start=True))
        elif e.conversation_id is not None and e.then is Then.ADVANCE:
            queue.append(_advance(e.conversation_id))


def _release(agent_id: uuid.UUID, job_id: uuid.UUID, *, unstarted: bool = False) -> None:
    """Give the job's slot back (with `unstarted`, its rate-limit start too); if jobs wait
    for its tenant's cap, wake the oldest."""
    tenant = limits.release(agent_id, job_id, unstarted=unstarted)
    if tenant is not None:
        wake_tenant(tenant)


def _cancel(job_id: uuid.UUID, token: int) -> None:
    # The slot stays taken until the worker's call has really ended: the worker gives it
    # back (or, if the worker is gone, it runs out with the lease).
    try:
        signals.cancel(job_id, token)
    except Exception as exc:  # noqa: BLE001 - the job is cancelled in the DB regardless
        log.warning("cancel signal for job %s not sent: %s", job_id, type(exc).__name__)


@contextmanager
def _giving_back(outs: list[Effects]) -> Iterator[None]:
    """Around a transaction (its commit included): agent slots taken by the steps whose
    effects are in `outs` are given back if it does not commit."""
    try:
        yield
    except BaseException:
        for out in outs:
            if out.taken is not None:
                _release(*out.taken, unstarted=True)
        raise


def _in_transaction(
    step: Callable[[Tx], Effects | None], *, durable: bool = True
) -> Effects | None:
    with transaction(durable=durable) as tx:
        return step(tx)


def _fail(job_id: uuid.UUID, reason: str) -> Effects | None:
    with transaction() as tx:
        return finish.fail(tx, job_id, reason)


def _advance(conv_id: uuid.UUID) -> Effects:
    out = Effects(conv_id)
    with _giving_back([out]), transaction() as tx:
        schedule.lock_conversation(tx, conv_id)
        schedule.start_next(tx, conv_id, out)
        schedule.mark_busy(tx, [out])
    return out


def _dispatch(conv_id: uuid.UUID, *, start: bool, advance_if_early: bool = True) -> Effects:
    """Dispatch what is due; with `start`, claim the next job in the same transaction (and
    advance afterwards if nothing new was made: a job may still wait its turn)."""
    made: list[Effects] = []
    with _giving_back(made), transaction() as tx:
        out = _dispatch_in(tx, conv_id, start, made)
        schedule.mark_busy(tx, made)
    if start:
        _advance_after(out, advance_if_early)
    return out


def _advance_after(out: Effects, advance_if_early: bool) -> None:
    """After a dispatch that starts: advance when the conversation's next job may still
    be waiting its turn (an interrupt, or no new job made and no window left open)."""
    if out.cancelled or (not out.jobs and (advance_if_early or out.due is None)):
        out.then = Then.ADVANCE


def _dispatch_in(tx: Tx, conv_id: uuid.UUID, start: bool, made: list[Effects]) -> Effects:
    """`_dispatch`'s transaction but the agents' busy marks (`schedule.mark_busy`, the
    caller's, last); its effects also go into `made` (slots to give back)."""
    out = dispatch.dispatch(tx, conv_id)
    made.append(out)
    # After an interrupt the cancelled jobs hold their agents' slots until this commits;
    # the next job starts after that.
    if start and out.jobs and not out.cancelled:
        schedule.start_next(tx, conv_id, out)
    return out


# -- entry points ----------------------------------------------------------------------------


def post_message(
    conversation_id: uuid.UUID | str,
    author_id: uuid.UUID | str,
    content: str,
    idempotency_key: str | None = None,
) -> PostedMessage:
    """Accept a message: it is in the database when this returns, and will be answered.

    Raises ConversationNotFound, NotAParticipant, EmptyContent, ContentTooLong or
    InvalidInput, having written nothing. With an `idempotency_key`, posting the same
    author and content again returns the first message (`duplicate=True`); the same key
    with other content raises Conflict.
    """
    content = post.check_content(content)
    key = post.check_idempotency_key(idempotency_key)
    cid = ids.conversation(conversation_id)
    with transaction() as tx:
        posted, out = post.post(tx, cid, ids.maybe(author_id), content, key, shown_id=author_id)
    run(out)
    return posted


def dispatch_due(conversation_id: uuid.UUID | str, *, start: bool = False) -> Effects:
    """If the conversation's pending messages are due, turn them into jobs; with `start`,
    claim its next job in the same transaction. Idempotent. Returns what it did (`jobs`,
    `handled`, and `due` when the window is not over)."""
    out = _dispatch(ids.conversation(conversation_id), start=start)
    run(out)
    return out


def fire(conversation_id: uuid.UUID | str) -> Effects:
    """The debounce timer fired: dispatch what is due and start the next job, in one
    transaction; re-arm if the window is not over yet.

    The timer is forgotten BEFORE the database is read: a message committed before that
    found the timer armed and relied on it, and this read sees the message; one committed
    after it finds no timer and arms its own (so re-arming here never forces).
    """
    cid = ids.conversation(conversation_id)
    timers.disarm(cid)
    out = _dispatch(cid, start=True, advance_if_early=False)
    run(out)
    return out


def fire_taken(conversation_ids: list[str]) -> int:
    """The scheduler took these windows (`timers.Scheduler`; they are disarmed): fire them
    as `fire` does, all in one transaction, so that a crowd of windows costs one commit.
    Returns how many jobs were made.

    The transaction first locks all its conversations, in id order, skipping those
    another transaction holds (a reply being written): those are armed again for a
    moment later. Agents are marked busy last. If the batch fails, nothing of it stays
    and each window is fired in a transaction of its own; one the database cannot take
    now (it is away) is armed again a second later, others are left to the reconciler.
    """
    conv_ids = sorted({ids.conversation(c) for c in conversation_ids})
    made: list[Effects] = []
    try:
        with _giving_back(made), transaction() as tx:
            locked = conversations.lock_batch(tx, conv_ids)
            for conv_id in conv_ids:
                if conv_id in locked:
                    _dispatch_in(tx, conv_id, True, made)
            schedule.mark_busy(tx, made)
    except Exception as exc:  # noqa: BLE001 - one at a time below
        log.warning("%d windows fired one by one: %s", len(conv_ids), type(exc).__name__)
        return sum(_fire_alone(conv_id) for conv_id in conv_ids)
    for conv_id in set(conv_ids) - locked:
        timers.arm(conv_id, utcnow() + timedelta(seconds=LOCKED_RETRY_SECONDS))
    for out in made:
        _advance_after(out, advance_if_early=False)
        try:
            run(out)
        except Exception as exc:  # noqa: BLE001 - the others' effects go on; reconciled
            log.warning("effects of %s not run: %s", out.conversation_id, type(exc).__name__)
    return sum(len(out.jobs) for out in made)


#: a window whose conversation another transaction holds is looked at again this soon
LOCKED_RETRY_SECONDS = 0.1
#: a window the database could not take (it is away) is fired again this much later
AWAY_RETRY_SECONDS = 1.0


def _fire_alone(conv_id: uuid.UUID) -> int:
    """Fire one window in a transaction of its own (see `fire_taken`)."""
    try:
        out = _dispatch(conv_id, start=True, advance_if_early=False)
    except (DatabaseError, ConnectionError) as exc:
        log.warning(
            "window of %s fired again in %ss: %s", conv_id, AWAY_RETRY_SECONDS, type(exc).__name__
        )
        timers.arm(conv_id, utcnow() + timedelta(seconds=AWAY_RETRY_SECONDS))
        return 0
    except Exception as exc:  # noqa: BLE001 - the window stays in the DB: reconciled
        log.warning("window of %s not fired: %s", conv_id, type(exc).__name__)
        return 0
    run(out)
    return len(out.jobs)


def advance(conversation_id: uuid.UUID | str) -> Claim | None:
    """Start the conversation's next job if none is running, and send it to the LLM pool.
    Returns the claim, or None when there is nothing to start now."""
    out = _advance(ids.conversation(conversation_id))
    run(out)
    return out.claim


def wake_agent(agent_id: uuid.UUID | str, *, exclude: uuid.UUID | None = None) -> int:
    """Advance the conversations parked for this agent (a slot freed, it was resumed, or
    its check is due), oldest first, as many as it has free slots. Returns how many."""
    with transaction() as tx:
        conv_ids = schedule.waiting_for(tx, ids.agent(agent_id), exclude=exclude)
    for conv_id in conv_ids:
        broker.send(broker.ADVANCE, conv_id)
    return len(conv_ids)


def wake_tenant(tenant_id: uuid.UUID) -> int:
    """Advance the tenant's conversations parked at its cap, oldest first, as many as it
    has free slots. Returns how many; with none parked, the tenant stops asking."""
    with transaction() as tx:
        conv_ids = schedule.waiting_in_tenant(tx, tenant_id)
    if not conv_ids and limits.tenant_running(tenant_id) < limits.tenant_cap():
        limits.forget_parked(tenant_id)
    for conv_id in conv_ids:
        broker.send(broker.ADVANCE, conv_id)
    return len(conv_ids)


def check_agent(agent_id: uuid.UUID | str) -> int:
    """The agent's check is due (`agentq.wake_agent`): forget it, then wake what is
    parked. A conversation that parks again re-arms it."""
    timers.disarm_agent_check(agent_id)
    return wake_agent(agent_id)


def prepare(job_id: uuid.UUID | str, token: int) -> Call | None:
    """The LLM call for the job's current claim, or None if the claim is stale."""
    jid = ids.job(job_id)
    # Not durable (no WAL flush wait): it writes the attempt's start (the context cache
    # goes with the call: its reply writes it). A PostgreSQL crash that loses the last
    # commits may lose that start: the call is then made again uncounted, which
    # at-least-once delivery allows anyway; a worker's crash loses nothing (the commit is
    # done). Its first statement says so (`durable=False`), not a `SET LOCAL` round trip.
    with transaction() as tx:
        return call.prepare(tx, jid, token, durable=False)


def run_job(job_id: uuid.UUID | str, token: int) -> None:
    """The LLM task: call the provider for the claimed job and complete it.

    The call runs on this process's call loop (`agentq.runtime.calls`), which renews the
    job's lease while it lasts, streams its tokens, and stops it when the conversation
    cancels the job, its claim is lost, or its attempt passes `LLM_ATTEMPT_DEADLINE`.
    Transient provider errors are retried inside the call (tenacity); what still fails
    costs the job an attempt. If writing the reply fails, the answer is kept (on the job,
    else in Redis), so a retry writes it without calling the provider again.

    While the circuit of the job's model profile is open (`agentq.runtime.breaker`) the
    job is held instead: before its call, or when its call fails as the circuit opens.
    """
    jid = ids.job(job_id)
    c = prepare(jid, token)
    if c is None:
        log.info("job %s claim %s is stale; nothing to do", jid, token)
        _ended_elsewhere(jid)
        return
    if c.held is not None:
        hold(jid, token, c.profile, c.held, started=False)
        return
    kept = answers.recall(jid)
    if c.answered or kept is not None:
        complete(jid, kept, token if kept is not None else None, cache=c.cache)
        return
    s = get_settings()
    flight = calls.Flight(
        jid, token, c.agent_id, c.conversation_id, time.monotonic() + s.llm.attempt_deadline
    )

    async def guarded(on_token: Callable[[str], None]) -> ChatResult:
        with breaker.guarding(c.profile):  # its requests report to the profile's circuit
            return await call.call(
                c, on_token if s.stream_tokens else None, on_restart=flight.restart
            )

    try:
        result = calls.calls().run(flight, guarded)
    except calls.Stopped as stopped:
        if stopped.reason == calls.DEADLINE:
            limit = s.llm.attempt_deadline
            reason = f"the LLM call took longer than its deadline of {limit:g} s"
            attempt_failed(jid, token, reason, retryable=True)
        else:
            _ended_elsewhere(jid)
        return
    except ProviderError as exc:
        # Failed as its provider is down and the circuit is open now (this failure may
        # have opened it): the outage, not the job, spent that attempt.
        down = breaker.counts(exc)
        held = breaker.admit(c.profile, jid, c.conversation_id, take=False).wait if down else None
        if held is not None:
            hold(jid, token, c.profile, held, started=True)
            return
        attempt_failed(
            jid, token, call.short_reason(exc), retryable=exc.retryable, retry_after=exc.retry_after
        )
        return
    except Exception as exc:  # noqa: BLE001 - a bug or an odd provider costs one attempt
        log.exception("job %s: unexpected error in the LLM call", jid)
        attempt_failed(jid, token, call.short_reason(exc), retryable=True)
        return
    finally:
        if c.probe:  # ended without an outcome (stopped, a bug)? another job may probe
            breaker.release_probe(c.profile, jid)
    problem = call.unusable(result)
    if problem is not None:
        attempt_failed(jid, token, problem[0], retryable=problem[1])
        return
    try:
        written = complete(jid, result, token, cache=c.cache)
    except BaseException:
        answers.keep(jid, result)
        raise
    if not written:  # the claim went stale as the call ended (an interrupt, a stop)
        _ended_elsewhere(jid)


def _ended_elsewhere(job_id: uuid.UUID) -> None:
    """A job this worker held ended without it (cancelled, failed, or finished by another
    claim): give back its agent slot, now that nothing of it runs here, and wake what
    waits for the agent."""
    with transaction() as tx:
        job = stored_jobs.get(tx, job_id)
    if job is not None and job.status != JobStatus.ACTIVE:
        _release(job.agent_id, job_id)
        wake_agent(job.agent_id)


def store_result(job_id: uuid.UUID | str, token: int, result: ChatResult) -> bool:
    """Keep the provider's answer on the job, if claim `token` is still current."""
    jid = ids.job(job_id)
    answer = call.answer(jid, result)
    with transaction() as tx:
        return stored_jobs.store_answer(tx, jid, token, answer)


def complete(
    job_id: uuid.UUID | str,
    result: ChatResult | None = None,
    token: int | None = None,
    *,
    cache: contexts.Pending | None = None,
) -> bool:
    """Write the job's reply and finish it. Idempotent: run twice, it writes once.

    With `result`, the provider's answer for the claim `token` is written, if that claim
    is still current; without, the answer stored on the job earlier. `cache`: the context
    cache its call read (`Call.cache`), written with the reply. Returns whether this call
    did the writing.
    """
    jid = ids.job(job_id)
    answer = call.answer(jid, result) if result is not None else None
    out = _in_transaction(lambda tx: finish.complete(tx, jid, answer, token, cache))
    if out is None:
        return False
    log.info("job %s completed", jid, extra={"conversation_id": str(out.conversation_id)})
    run(out)
    return True


def attempt_failed(
    job_id: uuid.UUID,
    token: int,
    reason: str,
    *,
    retryable: bool,
    retry_after: float | None = None,
) -> None:
    """Record a failed attempt: retry after a backoff (at least `retry_after`, when the
    provider said when to come back), or fail the job visibly."""
    out = _in_transaction(
        lambda tx: finish.attempt_failed(
            tx, job_id, token, reason, retryable=retryable, retry_after=retry_after
        )
    )
    if out is None:  # the claim went stale meanwhile: its slot is still this worker's
        _ended_elsewhere(job_id)
        return
    if out.advance_in is not None:
        log.warning("job %s attempt failed, retrying in %.1fs: %s", job_id, out.advance_in, reason)
    else:
        log.warning("job %s failed: %s", job_id, reason)
    run(out)


def hold(job_id: uuid.UUID, token: int, profile: str, wait: float, *, started: bool) -> None:
    """Hold the job of claim `token` for `wait` seconds: the circuit of its model profile
    is open. Delayed, not failed, and no attempt counted (one its call `started` is given
    back); the conversation is advanced again then, or as soon as the circuit closes."""
    out = _in_transaction(
        lambda tx: finish.hold(tx, job_id, token, profile=profile, wait=wait, started=started)
    )
    if out is None:  # the claim went stale meanwhile: its slot is still this worker's
        _ended_elsewhere(job_id)
        return
    log.info("job %s held %.1f s: the circuit of model profile %s is open", job_id, wait, profile)
    run(out)
