"""Model profiles: the operator's named LLM configurations, the only ones agents may use.

A profile says where calls go and with which secret (provider, endpoint, the NAME of the
environment variable holding the key, model) and bounds what an agent may ask of it
(max tokens, timeout, concurrent jobs, rate). Operators declare profiles in
`AGENTQ_MODEL_PROFILES` (a JSON object of name -> fields) and/or in the file named by
`AGENTQ_MODEL_PROFILES_FILE` (JSON, or TOML when it ends in `.toml`; re-read when it
changes, so profiles are added without restarting workers). Fields a profile leaves out
take the `LLM_*` settings; a profile named `default` always exists (the `LLM_*` settings
themselves, unless declared).

Tenants choose a profile by name and may set only bounded generation parameters
(`agentq.ops.agents.create_agent`): no endpoint, key variable or import path comes from a
caller, so the operator's keys go only to the endpoints the operator configured.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentq import logging as agentq_logging
from agentq.config import Settings, get_settings
from agentq.errors import ProfileConfigError, UnknownProfile

log = logging.getLogger(__name__)

DEFAULT = "default"
#: the variable holding the key of profiles that name none (read through LLM_API_KEY's
#: setting, so a `.env` file works too)
DEFAULT_KEY_ENV = "LLM_API_KEY"
#: what an agent's model_config may hold: the profile and bounded generation parameters
AGENT_KEYS = ("profile", "max_tokens", "temperature", "timeout")
MAX_TEMPERATURE = 2.0

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_IMPORT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ModelProfile(BaseModel):
    """One operator-declared LLM configuration and its bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str
    #: a registered provider (openai, anthropic, echo, or one registered in code), or
    #: "package.module:Class" -- an import path, which only operator config may give
    provider: str
    endpoint: str
    #: the NAME of the operator's environment variable holding the key, never the key
    api_key_env: str = DEFAULT_KEY_ENV
    model: str
    #: the most an agent may ask for, and what it gets unless it asks for less
    max_tokens: int = Field(gt=0)
    max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    #: seconds for one HTTP request: the cap, and the default
    timeout: PositiveFloat
    #: caps of the agents' limits
    max_concurrent_jobs: int = Field(default=10, ge=1)
    rate_limit_per_minute: int = Field(default=600, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                "must be 1-64 letters, digits, _ . - (starting with a letter or digit)"
            )
        return v

    @field_validator("provider")
    @classmethod
    def _provider(cls, v: str) -> str:
        from agentq.providers import provider_names

        if ":" in v:
            if not _IMPORT_RE.match(v):
                raise ValueError("an import path must read package.module:ClassName")
            return v
        if v not in provider_names():
            raise ValueError(f"unknown provider {v!r}; known: {', '.join(provider_names())}")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, v: str) -> str:
        if not _ENV_RE.match(v):
            raise ValueError("must be the NAME of an environment variable (not a key)")
        return v

    @property
    def host(self) -> str:
        """The endpoint's host (and port), for listings: never a path or credentials."""
        parts = urlsplit(self.endpoint)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    def api_key(self) -> str:
        """The key's value, read from the operator's environment when a call is made;
        masked in every log line from then on, whatever the variable is named."""
        if self.api_key_env == DEFAULT_KEY_ENV:
            value = get_settings().llm.api_key.get_secret_value()
        else:
            value = os.environ.get(self.api_key_env, "")
        agentq_logging.add_secrets(value)
        return value


def _defaults(s: Settings) -> dict[str, Any]:
    llm = s.llm
    return {
        "provider": llm.provider,
        "endpoint": llm.endpoint,
        "model": llm.model,
        "max_tokens": llm.max_tokens,
        "timeout": llm.timeout,
    }


def parse(
    declared: Mapping[str, Any], source: str, defaults: Mapping[str, Any]
) -> dict[str, ModelProfile]:
    """Profiles from a mapping of name -> fields; errors name `source`, profile and field."""
    if not isinstance(declared, Mapping):
        raise ProfileConfigError(f"{source}: must be an object of profile name -> fields")
    out: dict[str, ModelProfile] = {}
    for name, fields in declared.items():
        if not isinstance(fields, Mapping):
            raise ProfileConfigError(f"{source}: profile {name!r}: must be an object of fields")
        if "name" in fields:
            raise ProfileConfigError(f"{source}: profile {name!r}: name: is the key, not a field")
        try:
            out[name] = ModelProfile(**{**defaults, **fields, "name": name})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "(profile)"
            raise ProfileConfigError(f"{source}: profile {name!r}: {field}: {err['msg']}") from None
    return out


def _read_file(path: Path) -> Any:
    source = f"AGENTQ_MODEL_PROFILES_FILE {path}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileConfigError(f"{source}: cannot be read ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProfileConfigError(f"{source}: invalid {path.suffix or 'JSON'}: {exc}") from None


def _load(s: Settings, file_data: Any) -> dict[str, ModelProfile]:
    defaults = _defaults(s)
    found: dict[str, ModelProfile] = {}
    if s.model_profiles_file is not None:
        source = f"AGENTQ_MODEL_PROFILES_FILE {s.model_profiles_file}"
        found.update(parse(file_data, source, defaults))
    if s.model_profiles.strip():
        try:
            declared = json.loads(s.model_profiles, parse_constant=_no_constant)
        except ValueError as exc:
            raise ProfileConfigError(f"AGENTQ_MODEL_PROFILES: invalid JSON: {exc}") from None
        from_env = parse(declared, "AGENTQ_MODEL_PROFILES", defaults)
        twice = sorted(set(found) & set(from_env))
        if twice:
            raise ProfileConfigError(
                f"AGENTQ_MODEL_PROFILES: profile {twice[0]!r} is declared in "
                "AGENTQ_MODEL_PROFILES_FILE too"
            )
        found.update(from_env)
    if DEFAULT not in found:
        found[DEFAULT] = ModelProfile(name=DEFAULT, **defaults)
    return dict(sorted(found.items()))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


_lock = threading.Lock()
#: (settings, file stamp) -> the profiles they make; one entry
_cache: tuple[Settings, object, dict[str, ModelProfile]] | None = None


def _stamp(path: Path | None) -> object:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def all() -> dict[str, ModelProfile]:  # noqa: A001 - profiles.all(), as in the docs
    """Every profile by name (`default` included), read from the settings and the file.

    Raises ProfileConfigError for an invalid declaration at first read; a profiles file
    that turns invalid later is reported in the log and the last valid profiles stay."""
    global _cache
    s = get_settings()
    stamp = _stamp(s.model_profiles_file)
    cached = _cache
    if cached is not None and cached[0] is s and cached[1] == stamp:
        return cached[2]
    with _lock:
        try:
            data = _read_file(s.model_profiles_file) if s.model_profiles_file else None
            profiles = _load(s, data)
        except ProfileConfigError:
            if cached is None or cached[0] is not s:
                raise
            log.exception("model profiles not reloaded; the previous ones stay in use")
            profiles = cached[2]
        _cache = (s, stamp, profiles)
    return profiles


def get(name: str, *, field: str = "model_config.profile") -> ModelProfile:
    """The profile `name`, or UnknownProfile naming the known ones."""
    profiles = all()
    found = profiles.get(name)
    if found is None:
        raise UnknownProfile(name, list(profiles), field)
    return found


def of_agent(model_config: Mapping[str, Any]) -> ModelProfile:
    """The profile an agent's stored model_config names (`default` when none)."""
    name = model_config.get("profile", DEFAULT)
    return get(name if isinstance(name, str) else repr(name))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def bounded(model_config: Mapping[str, Any], profile: ModelProfile) -> dict[str, Any]:
    """The generation parameters of a stored model_config, within the profile's caps;
    anything else it holds (keys of older versions: endpoint, model...) is ignored."""
    tokens = _number(model_config.get("max_tokens"))
    temperature = _number(model_config.get("temperature"))
    timeout = _number(model_config.get("timeout"))
    return {
        "max_tokens": min(int(tokens), profile.max_tokens) if tokens and tokens >= 1 else None,
        "temperature": (
            min(max(temperature, 0.0), MAX_TEMPERATURE) if temperature is not None else None
        ),
        "timeout": min(timeout, profile.timeout) if timeout and timeout > 0 else None,
    }
