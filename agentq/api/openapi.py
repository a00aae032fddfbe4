"""The OpenAPI document (`/openapi.json`): every operation's problem answers, derived in
one place from what the app does, each `application/problem+json` with the `Problem`
schema, and operation ids that are the routes' names (`create_agent`, `post_message`).

What a route can answer follows from its shape: a key (401), ids in the path (404), any
parameter or body (422), a body method (413, 415: api/body.py checks every one), a
write under `/v1` (409: a conflict with the stored state or a lost race). A route adds
what only it can answer (429, 503, ...) with `responses={status: {"description": ...}}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from agentq.api import problems
from agentq.api.body import BODY_METHODS

#: methods that change something
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: FastAPI's own 422 shape, which agentq never answers
_FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
_REF = "#/components/schemas/Problem"

#: what each problem status means, unless the route says more
DESCRIPTIONS: dict[int, str] = {
    400: "Bad request: the detail says what is wrong.",
    401: "No valid API key: send `Authorization: Bearer <key>` (`agentq keys create`).",
    403: "The key may not do this: a read-only key (AGENTQ_READ_ONLY_KEYS) only reads.",
    404: "No such resource of the key's tenant; the detail names the id.",
    409: "Conflicts with the stored state (the detail says how), or a concurrent request "
    "changed the same thing: read it again.",
    413: "The body is larger than AGENTQ_API_MAX_BODY_BYTES; nothing was stored.",
    415: "The body is not sent as `Content-Type: application/json`; nothing was stored.",
    422: "Invalid input: `field` names it (a body field, a parameter, a header or `body` "
    "for malformed JSON), the detail says why; nothing was stored.",
    429: "Too many at once for the tenant: retry after `Retry-After` seconds.",
    503: "Not available now: the detail names what is missing.",
}
#: headers a problem answer of this status carries
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def _fastapi_default(response: dict[str, Any]) -> bool:
    """FastAPI's own 422 (any route with parameters, even hidden ones): decided here."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return str(schema.get("$ref", "")).endswith("/HTTPValidationError")


def problem_statuses(method: str, operation: dict[str, Any]) -> set[int]:
    """The problem statuses an operation (as FastAPI documents it) can answer."""
    statuses = {
        int(status)
        for status, response in operation.get("responses", {}).items()
        if status.isdigit() and int(status) >= 400 and not _fastapi_default(response)
    }
    params = operation.get("parameters", [])
    if operation.get("security"):  # the API key (auth.py)
        statuses.add(401)
        if method in WRITES:  # every /v1 write is an acting route (auth.acting)
            statuses |= {403, 409}
    if any(p["in"] == "path" for p in params):
        statuses.add(404)
    if params or "requestBody" in operation:
        statuses.add(422)
    if method in BODY_METHODS:
        statuses |= {413, 415, 422}
    return statuses


def _problem_response(status: int, declared: dict[str, Any] | None) -> dict[str, Any]:
    declared = declared or {}
    response: dict[str, Any] = {
        "description": declared.get("description") or DESCRIPTIONS.get(status, "An error."),
        "content": {problems.MEDIA_TYPE: {"schema": {"$ref": _REF}}},
    }
    headers = {**HEADERS.get(status, {}), **declared.get("headers", {})}
    if headers:
        response["headers"] = headers
    return response


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    seen: dict[str, str] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            op_id = operation["operationId"]
            if op_id in seen:
                raise RuntimeError(f"operationId {op_id!r} of {path} is {seen[op_id]}'s too")
            seen[op_id] = path
            statuses = problem_statuses(method.upper(), operation)
            responses = operation["responses"]
            for key in [k for k, v in responses.items() if _fastapi_default(v)]:
                del responses[key]
            for status in statuses:
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = problems.Problem.model_json_schema()
    for name in _FASTAPI_SCHEMAS:
        schemas.pop(name, None)
    app.openapi_schema = spec
    return spec


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its name (the function's unless `name=` says otherwise)."""
    return route.name


def install(app: FastAPI) -> None:
    """Serve `document(app)` as `/openapi.json`."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
