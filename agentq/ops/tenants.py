"""Which tenant the in-process faces act for: the CLI (`--tenant`, AGENTQ_TENANT) and
`agentq.Client(tenant=...)`.

Everything belongs to a tenant. An API key names its tenant; in-process callers name
one, or act for the tenant named "default" (AGENTQ_TENANT overrides it), which is
created the first time it is used, like any tenant named for the first time.
"""

from __future__ import annotations

import os
import uuid

from agentq.errors import InvalidInput
from agentq.store import tenants

#: the tenant of in-process callers that name none
DEFAULT_TENANT = "default"
#: the environment variable naming the in-process callers' tenant
TENANT_ENV = "AGENTQ_TENANT"


def tenant_name(tenant: str | None = None) -> str:
    """`tenant`, else $AGENTQ_TENANT, else "default"; InvalidInput unless it is 1 to 100
    printable characters."""
    name = tenant if tenant is not None else os.environ.get(TENANT_ENV) or DEFAULT_TENANT
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInput("tenant", "must be 1 to 100 printable characters")
    return name


def tenant_id(tenant: str | None = None) -> uuid.UUID:
    """The id of the tenant named `tenant` (see `tenant_name`), created if new."""
    return tenants.tenant_id(tenant_name(tenant))


def set_pending_limit(tenant: str, limit: int | None) -> None:
    """The tenant's own limit on pending messages (backpressure): None follows
    AGENTQ_TENANT_MAX_PENDING_MESSAGES, 0 is none. TenantNotFound for an unknown tenant."""
    if limit is not None and not 0 <= limit <= 2**31 - 1:
        raise InvalidInput("limit", "must be 0 (no limit) or a positive count")
    tenants.set_max_pending(tenant_name(tenant), limit)
