"""Settings, read from the environment (and a `.env` file) with pydantic-settings.

agentq's own knobs use the `AGENTQ_` prefix; the provider is configured by the plain
`LLM_*` variables that other tools use too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the embedded default: a SQLite file in the working directory, nothing to install
DEFAULT_DATABASE_URL = "sqlite:///agentq.db"
#: the shortest job lease allowed, in seconds
MIN_LEASE_SECONDS = 1.0
#: where a local Redis usually listens
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class LLMSettings(BaseSettings):
    """The provider of the `default` model profile, and what other profiles leave unsaid.

    The retry and deadline knobs apply to every profile."""

    model_config = SettingsConfigDict(env_prefix="LLM_", env_file=".env", extra="ignore")

    provider: str = "openai"
    endpoint: str = "http://127.0.0.1:8099/v1"
    api_key: SecretStr = SecretStr("")
    model: str = "fake-model"
    timeout: float = 60.0  # seconds for one HTTP request, connect included
    max_tokens: int = 1024
    #: retries inside one attempt for transient errors (timeouts, 429, 5xx, 529)
    max_retries: int = 3
    #: base and cap of the exponential backoff with full jitter, in seconds
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    #: the most one attempt may take, retries and their waits included: it bounds a server
    #: that trickles bytes (httpx's timeout is per read) or never ends its stream
    attempt_deadline: float = 600.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTQ_", env_file=".env", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    #: prefix of every Redis key agentq owns, so that several deployments share a Redis
    redis_prefix: str = "agentq"

    debounce_seconds: float = 2.0  # coalesce a burst of typing into one reply
    max_wait_seconds: float = 10.0  # ...but never keep the first message waiting longer
    max_attempts: int = 3  # job-level attempts before the job fails visibly
    retry_backoff_seconds: float = 2.0  # first wait between job attempts, doubled each time
    retry_backoff_max_seconds: float = 60.0
    #: how long a claimed job's worker may stay silent before the job is claimed again; a
    #: live worker renews the lease every third of it, however long its LLM call takes, so
    #: this is how long a dead worker's job waits, not how long a call may last
    job_lease_seconds: float = 15.0
    #: how long a claimed job may wait for a worker to take up its LLM task before it is
    #: claimed again (a queue backlog is not a dead worker; a claim not taken up costs no
    #: attempt)
    claim_pickup_seconds: float = 60.0
    #: how often the reconciler looks for unfinished work
    reconcile_interval_seconds: float = 5.0
    #: how late past its due time work must be before the reconciler re-drives it
    reconcile_grace_seconds: float = 3.0

    #: the rolling window of the per-agent rate limit (rate_limit_per_minute starts in it)
    rate_limit_period_seconds: float = 60.0
    #: consecutive agent turns without a human message before agents stop talking
    hop_limit: int = 6
    #: agent replies a conversation may have in all (0: unbounded)
    turn_budget: int = 0
    #: "package.module:function" choosing who answers; default agentq.turn.responders
    responder_selector: str | None = None
    #: backpressure: messages a tenant may have posted and not yet had answered (0: no
    #: limit); a tenant's own `max_pending_messages` overrides it (agentq.runtime.backpressure)
    tenant_max_pending_messages: int = Field(default=10_000, ge=0)
    #: fair shares: jobs of one tenant that may run at once, across all its agents (0: no
    #: cap). Past it the tenant's next jobs park until one of its own ends, so its backlog
    #: cannot fill the LLM pool ahead of other tenants' turns (size it below the pool)
    tenant_max_concurrent_jobs: int = Field(default=0, ge=0)
    #: how old a tenant's pending count may be before a post over the limit counts again;
    #: also the Retry-After of a refused post
    tenant_pending_recount_seconds: float = Field(default=2.0, gt=0)
    max_content_length: int = 32_000  # characters in one message
    #: characters of an LLM reply kept; a runaway provider must not fill the database
    max_reply_length: int = 32_000
    context_messages: int = 20  # history given to the LLM
    #: ask providers to stream, and publish the text live as `agent.token` records
    stream_tokens: bool = True
    #: how often streamed tokens are published, batched
    token_flush_seconds: float = 0.05

    #: Celery broker visibility timeout; must exceed every countdown agentq schedules
    visibility_timeout_seconds: int = 3600
    #: workers send Celery task events from the start; off by default, as each task then
    #: costs several more Redis messages (Flower turns them on for as long as it runs)
    task_events: bool = False
    #: the operator's model profiles, a JSON object of name -> fields (see agentq.profiles);
    #: a profile named "default" always exists, made of the LLM_* settings unless declared
    model_profiles: str = ""
    #: a JSON or TOML file of model profiles (name -> fields), re-read when it changes
    model_profiles_file: Path | None = None
    #: circuit breaker per model profile (agentq.runtime.breaker): this many provider
    #: requests in a row failing as a provider that is down fails (connection errors,
    #: timeouts, 5xx, 529; never a 4xx or 429) open it, and its jobs wait without spending
    #: attempts; 0 turns it off
    breaker_failures: int = Field(default=5, ge=0)
    #: ...each within this many seconds of the one before (older failures are forgotten)
    breaker_window_seconds: float = Field(default=60.0, gt=0)
    #: how long it stays open before one probe call is let through (half-open); every
    #: failed probe doubles it, up to breaker_open_max_seconds
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    breaker_open_max_seconds: float = Field(default=300.0, gt=0)
    #: how long the other jobs wait on the probe before another may go (its worker may
    #: have died): about LLM_TIMEOUT, the longest one request of the probe may take
    breaker_probe_seconds: float = Field(default=60.0, gt=0)
    llm: LLMSettings = Field(default_factory=LLMSettings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.debounce_seconds < 0:
            raise ValueError("AGENTQ_DEBOUNCE_SECONDS must be >= 0")
        if self.max_wait_seconds < self.debounce_seconds:
            raise ValueError("AGENTQ_MAX_WAIT_SECONDS must be >= AGENTQ_DEBOUNCE_SECONDS")
        longest = max(self.max_wait_seconds, self.retry_backoff_max_seconds)
        longest = max(longest, self.breaker_open_max_seconds, self.breaker_probe_seconds)
        if self.visibility_timeout_seconds <= longest:
            # Celery's Redis transport redelivers an ETA task still waiting past the
            # visibility timeout; keep every countdown well inside it.
            raise ValueError(
                "AGENTQ_VISIBILITY_TIMEOUT_SECONDS must exceed max wait, retry backoff and "
                "the breaker's longest open and probe times"
            )
        if self.job_lease_seconds < MIN_LEASE_SECONDS:
            # A worker renews at a third of the lease: below this, a renewal's round trip
            # and a busy host's scheduling delay would be too close to losing it.
            raise ValueError(f"AGENTQ_JOB_LEASE_SECONDS must be >= {MIN_LEASE_SECONDS:g}")
        if self.claim_pickup_seconds <= 0 or self.token_flush_seconds <= 0:
            raise ValueError(
                "AGENTQ_CLAIM_PICKUP_SECONDS and AGENTQ_TOKEN_FLUSH_SECONDS must be > 0"
            )
        if self.llm.attempt_deadline <= 0:
            raise ValueError("LLM_ATTEMPT_DEADLINE must be > 0")
        if self.max_attempts < 1:
            raise ValueError("AGENTQ_MAX_ATTEMPTS must be >= 1")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        return Path(self.database_url.split("///", 1)[1])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    from agentq import logging as agentq_logging

    settings = Settings()
    # A key kept in `.env` is not in the environment, where the log redaction looks for
    # secrets by name: register its value.
    agentq_logging.add_secrets(settings.llm.api_key.get_secret_value())
    return settings


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
