"""Settings of the HTTP API (`AGENTQ_API_*`), apart from the core's."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTQ_API_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"  # only this machine, unless the operator says otherwise
    port: int = 8000
    #: request bodies above this answer 413; a message is at most 32k characters (4 bytes each)
    max_body_bytes: int = 1_048_576
    #: the longest `?wait=` honoured: a request holds a server thread while it waits
    max_wait_seconds: float = 60.0
    #: SSE comment lines this often, so that proxies keep an idle stream open
    sse_heartbeat_seconds: float = 15.0
    #: serve `/metrics` (with the per-agent gauges) on this port of its own, for
    #: Prometheus only; 0: not served apart
    metrics_port: int = 0
    #: the address of that port (inside a container: 0.0.0.0, left unpublished)
    metrics_host: str = "127.0.0.1"
    #: `/metrics` on the API port answers only `Authorization: Bearer <this>`; unset: 404
    metrics_token: SecretStr | None = Field(default=None, validation_alias="AGENTQ_METRICS_TOKEN")


@lru_cache(maxsize=1)
def api_settings() -> ApiSettings:
    return ApiSettings()
