"""Property-based run of schemathesis over `/openapi.json`: whatever the generated
request, with a valid key the API never answers 5xx, and every answer is one the document
declares (status code, content type, headers and body schema: problem answers are
`application/problem+json` with the `Problem` schema).

Every operation is run with random ids and again with ids of a real conversation, agent
and job of the key's tenant, so that the generated bodies reach the core's validation.
The number of examples is bounded so that the whole run stays well under a minute.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_support import Server, api_server, cli_create_key
from tests.conftest import Live

pytestmark = pytest.mark.integration

#: examples per operation, per mode and per set of ids
EXAMPLES = 6
#: the stream never ends on a real conversation: only its errors are fuzzed
ENDLESS = "/v1/conversations/{conversation_id}/stream"
#: no server error, and nothing the document does not declare
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(live_stack: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with api_server(live_stack.env, tmp_path_factory.mktemp("api")) as srv:
        yield srv


def real_ids(server: Server, key: str) -> dict[str, str]:
    """A conversation with a user, an agent and a finished job, all of the key's tenant."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        agent = http.post("/v1/agents", json={"name": f"fuzz-{uuid.uuid4().hex[:8]}"}).json()
        conv = http.post("/v1/conversations", json={"kind": "dm"}).json()
        http.post(f"/v1/conversations/{conv['id']}/participants", json={"agent_id": agent["id"]})
        user = http.post(
            f"/v1/conversations/{conv['id']}/participants", json={"user_id": "fuzzer"}
        ).json()
        posted = http.post(
            f"/v1/conversations/{conv['id']}/messages?wait=30",
            json={"author_id": user["id"], "content": "hi"},
        ).json()
    return {"conversation_id": conv["id"], "agent_id": agent["id"], "job_id": posted["job_id"]}


def test_generated_requests_get_no_server_error_and_only_documented_answers(
    server: Server, live_stack: Live
) -> None:
    key = cli_create_key(live_stack.env)
    auth = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    ids = real_ids(server, key)
    failures: list[str] = []
    calls = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        params = {p: ids[p] for p in ids if "{" + p + "}" in operation.path}
        variants: list[dict[str, Any] | None] = [None]
        if params and operation.path != ENDLESS:
            variants.append(params)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in variants:
                try:
                    strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                except Exception:  # noqa: BLE001 - nothing negative to generate for it
                    continue
                endless = operation.path == ENDLESS
                # Unsatisfiable: e.g. there is no negative version of a parameterless GET
                with contextlib.suppress(Unsatisfiable):
                    calls += fuzz(strategy, auth, failures, endless=endless)
    print(f"schemathesis: {calls} requests, {len(failures)} server errors or spec mismatches")
    assert calls > 100
    assert failures == [], "\n".join(failures[:10])


def fuzz(strategy: Any, auth: dict[str, str], failures: list[str], *, endless: bool) -> int:
    """Run up to EXAMPLES generated requests; note each 5xx or spec mismatch in `failures`."""
    calls = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        nonlocal calls
        if endless:  # never a conversation that exists: the stream would not end
            case.path_parameters = {"conversation_id": str(uuid.uuid4())}
        response = case.call(headers=auth, timeout=30)
        calls += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except FailureGroup as group:
            failures.append(
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200} -> "
                f"{response.status_code} {response.headers.get('content-type')} "
                f"{response.text[:200]}: {'; '.join(f.title for f in group.exceptions)}"
            )

    check()
    return calls
