"""A list page's request: its viewer, the tenant it shows and where it continues, checked
once for every list (a filter or cursor that names nothing answers 422, never
"everything"), and the link to the page after it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from agentq.api.console import render
from agentq.api.console.access import BadFilter, scope
from agentq.api.console.session import Viewer, viewer_of

#: rows a list page shows
PAGE = 50

Row = TypeVar("Row")


@dataclass(frozen=True)
class Listing:
    viewer: Viewer
    #: the tenant shown (None: every tenant, for an operator)
    tenant_id: uuid.UUID | None
    #: the (time, id) of the last row of the page before (None: the first page)
    after: tuple[datetime, uuid.UUID] | None

    def next_page(
        self,
        rows: Sequence[Row],
        filters: dict[str, str | None],
        at: Callable[[Row], tuple[datetime, uuid.UUID]],
    ) -> str | None:
        """The query of the page after `rows` with the same filters (None: this page is
        the last); `at` gives a row's (time, id), the list's order."""
        if len(rows) < PAGE:
            return None
        when, row_id = at(rows[-1])
        return "?" + urlencode({**kept(filters), "after": f"{when.isoformat()}_{row_id}"})


def kept(filters: dict[str, str | None]) -> dict[str, str]:
    """The filters a list's links carry on (those set)."""
    return {k: v for k, v in filters.items() if v}


def listing(
    request: Request,
    tenant: str | None,
    after: str | None,
    check: Callable[[], None] = lambda: None,
) -> Listing | Response:
    """The list request's viewer, tenant and cursor; or the answer instead: the login
    form, or 422 naming the filter that names nothing (`check` raises BadFilter for the
    page's own filters)."""
    viewer = viewer_of(request)
    if viewer is None:
        return render.login_redirect(request)
    try:
        found = Listing(viewer, scope(viewer, tenant), _after(after))
        check()
    except BadFilter as exc:
        return render.refused(request, viewer, str(exc))
    return found


def _after(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A page's cursor: the (time, id) of the last row of the page before."""
    if not raw:
        return None
    at, _, rid = raw.rpartition("_")
    try:
        when = datetime.fromisoformat(at)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return when, uuid.UUID(rid)
    except (ValueError, OverflowError):
        raise BadFilter("after", "not a cursor of this list; start from the first page") from None
