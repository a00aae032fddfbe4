"""The exceptions agentq raises, in one hierarchy.

Every message names the offending value, so that the caller (or the API's problem-details
answer) can say exactly what was wrong.
"""

from __future__ import annotations


class AgentqError(Exception):
    """Base of every error agentq raises on purpose."""

    #: short machine-readable code, used by the HTTP API's problem details
    code: str = "agentq_error"


class NotFound(AgentqError):
    code = "not_found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident!s} not found")
        self.kind = kind
        self.ident = ident


class ConversationNotFound(NotFound):
    def __init__(self, ident: object) -> None:
        super().__init__("conversation", ident)


class AgentNotFound(NotFound):
    def __init__(self, ident: object) -> None:
        super().__init__("agent", ident)


class ParticipantNotFound(NotFound):
    def __init__(self, ident: object) -> None:
        super().__init__("participant", ident)


class JobNotFound(NotFound):
    def __init__(self, ident: object) -> None:
        super().__init__("job", ident)


class TenantNotFound(NotFound):
    def __init__(self, ident: object) -> None:
        super().__init__("tenant", ident)


class InvalidInput(AgentqError):
    """A value given by the caller is not acceptable; `field` names it."""

    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class EmptyContent(InvalidInput):
    code = "empty_content"

    def __init__(self) -> None:
        super().__init__("content", "must not be empty or only whitespace")


class ContentTooLong(InvalidInput):
    code = "content_too_long"

    def __init__(self, length: int, limit: int) -> None:
        super().__init__("content", f"is {length} characters long; the limit is {limit}")
        self.length = length
        self.limit = limit


class NotAParticipant(InvalidInput):
    code = "not_a_participant"

    def __init__(self, author_id: object, conversation_id: object) -> None:
        super().__init__(
            "author_id",
            f"participant {author_id!s} is not a participant of conversation {conversation_id!s}",
        )


class Conflict(AgentqError):
    """The request contradicts the stored state (e.g. an idempotency key reused)."""

    code = "conflict"


class JobNotRetryable(Conflict):
    def __init__(self, job_id: object, status: str, why: str | None = None) -> None:
        super().__init__(
            f"job {job_id!s} cannot be retried: {why}"
            if why
            else f"job {job_id!s} is {status}; only failed or cancelled jobs can be retried"
        )


class ProviderError(AgentqError):
    """An LLM provider call failed.

    `retryable` says whether the same request may succeed later (timeouts, connection
    errors, 408, 409, 429, 5xx, 529, or the provider's `x-should-retry: true`; never a 429
    for `insufficient_quota`); `retry_after` carries the wait the provider asked for
    (`retry-after-ms` or `Retry-After`) in seconds, on retryable errors; `provider_code`
    is the provider's own error code when its body had one (e.g. "insufficient_quota",
    "unsupported_parameter", "overloaded_error"). The message never holds the API key and
    is one clean line of at most a few hundred characters.
    """

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        provider_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider_code = provider_code


class UnknownProvider(InvalidInput):
    code = "unknown_provider"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            "provider", f"unknown provider {name!r}; known: {', '.join(sorted(known))}"
        )


class Timeout(AgentqError):
    """Waiting for something (a reply, a job) took longer than allowed."""

    code = "timeout"


class UnknownProfile(InvalidInput):
    """An agent names a model profile the operator did not declare."""

    code = "unknown_profile"

    def __init__(self, name: str, known: list[str], field: str = "model_config.profile") -> None:
        super().__init__(
            field, f"unknown model profile {name!r}; known: {', '.join(sorted(known))}"
        )
        self.name = name


class ProfileConfigError(AgentqError):
    """The operator's model profiles (AGENTQ_MODEL_PROFILES, AGENTQ_MODEL_PROFILES_FILE)
    are invalid; the message names the source, the profile and the field."""

    code = "profile_config_error"


class Overloaded(AgentqError):
    """A tenant has as many messages pending (posted, not yet answered) as its limit
    allows: the post was refused whole, nothing was stored. Retry after `retry_after`
    seconds, or once replies arrive."""

    code = "too_many_pending_messages"

    def __init__(self, tenant: str, pending: int, limit: int, retry_after: int) -> None:
        super().__init__(
            f"tenant {tenant!r} has {pending} messages pending (not yet answered); its limit "
            f"is {limit}; nothing was stored, retry in {retry_after}s"
        )
        self.tenant = tenant
        self.pending = pending
        self.limit = limit
        self.retry_after = retry_after


class Busy(AgentqError):
    """The same work is already running for someone else (an agent's health check):
    retry after `retry_after` seconds, when its result is shared."""

    code = "busy"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
