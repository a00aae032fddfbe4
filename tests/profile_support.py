"""Model profiles for the tests, declared as an operator would: in AGENTQ_MODEL_PROFILES
(for a stack started with them) or in the file AGENTQ_MODEL_PROFILES_FILE names, which
running workers re-read when it changes (for servers a test starts after the suite's
workers)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

#: the suite's `default` profile: the LLM_* settings, with caps the load tests need
DEFAULT_PROFILE: dict[str, Any] = {"max_concurrent_jobs": 100, "rate_limit_per_minute": 1_000_000}


def profiles_json(**profiles: dict[str, Any]) -> str:
    """AGENTQ_MODEL_PROFILES holding `profiles` and the suite's default."""
    return json.dumps({"default": DEFAULT_PROFILE, **profiles})


def declare_profile(endpoint: str, **fields: Any) -> str:
    """Add a profile calling `endpoint` to the profiles file of this process's environment
    (the suite's workers read the same file); returns its name."""
    path = Path(os.environ["AGENTQ_MODEL_PROFILES_FILE"])
    current = json.loads(path.read_text()) if path.exists() else {}
    name = f"p{uuid.uuid4().hex[:10]}"
    current[name] = {"endpoint": endpoint, "max_concurrent_jobs": 100, **fields}
    current[name].setdefault("rate_limit_per_minute", 1_000_000)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current))
    os.replace(tmp, path)  # a new file: readers see all of it or none
    return name
