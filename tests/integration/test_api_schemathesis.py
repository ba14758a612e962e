"""Property-based run over the OpenAPI document: generated requests, sent in-process with an admin key, must
never cause a server error, an undocumented status, or a response that breaks its own schema.

The operations are driven from inside one test (rather than `schema.parametrize()` with a lazy fixture) because
the app needs the per-test database fixture and schemathesis' lazy-fixture mode does not run on pytest 9.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from api_conftest import stones_from_sandbox
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from opus.api.app import OPENAPI_URL, create_app
from opus.config import Settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.local.runtime import LocalRuntime
from opus.sandbox.runner import RunningSandbox

EXAMPLES_PER_OPERATION = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_api_honours_its_openapi_document(
    db: Database, settings: Settings, keys: dict[str, str], sandbox: RunningSandbox, nivoda: NivodaClient
) -> None:
    # Stones the sandbox knows (low ids, so generated ids hit them) and a few odd ones, so that holds and
    # purchases really reach the feed and searches return rows whose schema is checked.
    ids = [diamond_id for diamond_id, _ in stones_from_sandbox(db, sandbox, 8)]
    with db.transaction() as conn:
        conn.execute("UPDATE diamonds SET color = 'FANCY', clarity = NULL, lab_grown = true WHERE id = %s", (ids[5],))
        conn.execute("UPDATE diamonds SET availability = 'SOLD' WHERE id = %s", (ids[6],))
        conn.execute("UPDATE diamonds SET feed_price = 99999.99, price = 119999.99, shape = 'OVAL' WHERE id = %s",
                     (ids[7],))
    with LocalRuntime(settings, db=db, feed=nivoda) as runtime:
        app = create_app(db=db, settings=settings, feed=nivoda, control=runtime.control)
        schema = schemathesis.openapi.from_asgi(OPENAPI_URL, app)
        headers = {"X-API-Key": keys["admin"]}
        statuses: Counter[int] = Counter()
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        for operation in operations:

            @given(case=operation.as_strategy())
            @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                                 database=None, suppress_health_check=list(HealthCheck))
            def conforms(case: schemathesis.Case[Any]) -> None:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
                statuses[response.status_code] += 1

            conforms()
    assert len(operations) >= 22
    assert all(statuses[code] for code in (200, 201, 422)), f"the run reached real work: {statuses}"
