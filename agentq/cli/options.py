"""Options shared by the command groups (Typer only: `--help` imports nothing else)."""

from __future__ import annotations

from typing import Annotated

import typer

#: the tenant an in-process command acts for; ids of another tenant's conversations,
#: messages and jobs are not found, as unknown ids are (agentq.ops.tenancy)
Tenant = Annotated[
    str | None,
    typer.Option(
        envvar="AGENTQ_TENANT",
        help="The tenant to act for: ids of another tenant's conversations, messages and "
        'jobs are not found. Default: $AGENTQ_TENANT, else "default".',
        show_default=False,
    ),
]
