"""Settings of the HTTP API (`AGENTQ_API_*`), apart from the core's."""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentq import logging as agentq_logging

#: the shortest console key or metrics token accepted (they are bearer credentials)
MIN_KEY_CHARS = 16


class ApiSettings(BaseSettings):
    #: errors name the setting and why, never its value (keys are settings here)
    model_config = SettingsConfigDict(
        env_prefix="AGENTQ_API_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"  # only this machine, unless the operator says otherwise
    port: int = 8000
    #: request bodies above this answer 413; a message is at most 32k characters (4 bytes each)
    max_body_bytes: int = 1_048_576
    #: the longest `?wait=` honoured (a waiting request holds no server thread)
    max_wait_seconds: float = 60.0
    #: `?wait=` posts of one tenant waiting at once, over all API processes; past it a
    #: post with `?wait=` answers 429 and stores nothing
    max_waits_per_tenant: int = Field(default=20, ge=1)
    #: SSE streams of one tenant open at once, over all API processes; past it 429
    max_streams_per_tenant: int = Field(default=20, ge=1)
    #: a waiting post looks at the database this often even when no event woke it
    wait_recheck_seconds: float = Field(default=2.0, gt=0)
    #: an open stream checks this often that its key is still valid (and ends if not)
    key_recheck_seconds: float = Field(default=10.0, gt=0)
    #: `Retry-After` of a 429 for too many open streams
    stream_retry_after_seconds: int = Field(default=10, ge=1)
    #: Redis connections one API process opens at most for waits and streams
    redis_max_connections: int = Field(default=1000, ge=10)
    #: SSE comment lines this often, so that proxies keep an idle stream open
    sse_heartbeat_seconds: float = 15.0
    #: serve `/metrics` (with the per-agent gauges) on this port of its own, for
    #: Prometheus only; 0: not served apart
    metrics_port: int = 0
    #: the address of that port (inside a container: 0.0.0.0, left unpublished)
    metrics_host: str = "127.0.0.1"
    #: `/metrics` on the API port answers only `Authorization: Bearer <this>`; unset: 404
    metrics_token: SecretStr | None = Field(default=None, validation_alias="AGENTQ_METRICS_TOKEN")
    #: the console's operator key: every tenant, may act (pause, resume, retry); unset:
    #: only tenants' API keys log in to `/console`
    console_operator_key: SecretStr | None = Field(
        default=None, validation_alias="AGENTQ_CONSOLE_OPERATOR_KEY"
    )
    #: the console's read-only operator key: every tenant, no action
    console_viewer_key: SecretStr | None = Field(
        default=None, validation_alias="AGENTQ_CONSOLE_VIEWER_KEY"
    )
    #: ids of API keys (`agentq keys list`, comma-separated) that may read but not act,
    #: over `/v1` and in the console alike: every request that changes something (creates,
    #: updates or deletes an agent, a conversation or a participant, posts a message,
    #: pauses, resumes, stops, starts, retries) answers 403; reads and streams answer as
    #: for any key of the tenant
    read_only_keys: str = Field(default="", validation_alias="AGENTQ_READ_ONLY_KEYS")
    #: the same list under its first name (from when it bound the console only), still
    #: read: a key listed in either is read-only everywhere
    console_read_only_keys: str = Field(
        default="", validation_alias="AGENTQ_CONSOLE_READ_ONLY_KEYS"
    )
    #: failed console logins from one client address in a window; past it a login answers
    #: 429 with Retry-After before any key is looked at (a guesser gets 10 a minute);
    #: counted for the logins whose route passes the address (`session.login(client=)`)
    console_login_failures_per_client: int = Field(
        default=10, ge=1, validation_alias="AGENTQ_CONSOLE_LOGIN_FAILURES_PER_CLIENT"
    )
    #: failed console logins from all addresses together in a window (a guesser spread
    #: over many addresses); past it every login waits for the window's end. High, since
    #: it locks everyone out: with keys of 16 characters or more (enforced) guessing is
    #: hopeless anyway, and the per-address limit holds one guesser to its own share
    console_login_failures_total: int = Field(
        default=1000, ge=1, validation_alias="AGENTQ_CONSOLE_LOGIN_FAILURES_TOTAL"
    )
    #: the length of those windows (fixed windows, counted in Redis across API processes)
    console_login_window_seconds: int = Field(
        default=60, ge=1, validation_alias="AGENTQ_CONSOLE_LOGIN_WINDOW_SECONDS"
    )
    #: Flower's address, for the console's links from a job to its Celery tasks and back
    flower_url: str | None = Field(default=None, validation_alias="AGENTQ_FLOWER_URL")

    _read_only_ids: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("metrics_token", "console_operator_key", "console_viewer_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # empty is unset; a short key is guessable, and too short for the logs to mask
        if value is not None and 0 < len(value.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_KEY_CHARS} characters (a short key is guessable): "
                "generate one, e.g. `openssl rand -hex 32`"
            )
        return value

    @field_validator("read_only_keys", "console_read_only_keys")
    @classmethod
    def _key_ids(cls, value: str) -> str:
        for entry in _entries(value):
            try:
                uuid.UUID(entry)
            except ValueError:
                # a key listed by mistake is not quoted back: errors get logged
                what = "an API key itself" if entry.startswith("aq_") else repr(entry[:40])
                raise ValueError(
                    f"{what} is listed where API key ids belong (UUIDs, as `agentq keys "
                    "list` shows them): list key ids, comma-separated, never keys"
                ) from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        listed = _entries(self.read_only_keys) + _entries(self.console_read_only_keys)
        self._read_only_ids = frozenset(str(uuid.UUID(e)) for e in listed)

    def read_only(self, key_id: uuid.UUID | str) -> bool:
        """Whether the API key `key_id` is listed as read-only (in either variable)."""
        return str(key_id).lower() in self._read_only_ids

    def secrets(self) -> list[str]:
        """The secret values among these settings (for the logs to mask)."""
        values = [self.metrics_token, self.console_operator_key, self.console_viewer_key]
        found = [v.get_secret_value() for v in values if v is not None]
        if self.flower_url:
            password = urlsplit(self.flower_url).password
            if password:
                found.append(password)
        return found


def _entries(value: str) -> list[str]:
    return [e.strip() for e in value.split(",") if e.strip()]


@lru_cache(maxsize=1)
def api_settings() -> ApiSettings:
    """The API's settings, read once; their secret values are masked in every log line
    from then on (they may come from `.env`, which the logs cannot see)."""
    settings = ApiSettings()
    agentq_logging.add_secrets(*settings.secrets())
    return settings
