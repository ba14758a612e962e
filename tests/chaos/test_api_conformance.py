"""Schemathesis with every check, in both generation modes: valid requests (positive) and requests that break
the document (negative: wrong types, missing required parameters, unknown enum values, malformed bodies).
The API must answer every one without a server error, with a status and headers its OpenAPI document declares,
and must refuse what the document says is invalid. Then schemathesis's coverage phase, as its command line runs
it: boundary values of every constraint, each operation's methods the path does not declare (405 and `Allow`),
and OPTIONS answers compared with the methods the document gives each path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
import schemathesis.engine
from api_conftest import stones_from_sandbox
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.engine import events
from schemathesis.generation import GenerationMode
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from opus.api.app import OPENAPI_URL, create_app
from opus.config import Settings
from opus.db.pool import Database
from opus.feeds.nivoda import NivodaClient
from opus.local.runtime import LocalRuntime
from opus.sandbox.runner import RunningSandbox

EXAMPLES_PER_OPERATION = 25


# Refusals of schema-valid requests that depend on state no schema can describe, each documented on its route:
# a cursor this server did not sign (cursors are opaque and signed), and an Idempotency-Key already used for
# another stone.
STATEFUL_REFUSALS = {(400, "invalid_cursor"), (422, "idempotency_key_reused")}


def _cross_field(error: dict[str, Any]) -> bool:
    """A 422 about how fields relate (a reversed range), which JSON Schema cannot express: its problems name no
    single field (the service's own checks list plain messages; pydantic's model checks stop at the model)."""
    details = error.get("details")
    return error["code"] == "validation_failed" and isinstance(details, list) and bool(details) and all(
        isinstance(d, str) or (len(d.get("loc", ())) <= 2 and d.get("type") == "value_error") for d in details)


def _refused_for_reasons_no_schema_states(response: Any) -> bool:
    """A refusal of a schema-valid request that one of the STATEFUL_REFUSALS or a cross-field rule explains."""
    if response.status_code not in (400, 422):
        return False
    error = response.json()["error"]
    return (response.status_code, error["code"]) in STATEFUL_REFUSALS or _cross_field(error)


def accepts_valid_data(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> bool | None:
    """positive_data_acceptance, except for the STATEFUL_REFUSALS and cross-field refusals."""
    if _refused_for_reasons_no_schema_states(response):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]

def _catalogue(db: Database, sandbox: RunningSandbox) -> None:
    """Stones the sandbox knows (low ids, so that generated ids hit them: holds and purchases reach the feed) and
    a few odd ones whose answers' schemas are checked too: a fancy colour without clarity, a sold stone, a dear
    one."""
    ids = [diamond_id for diamond_id, _ in stones_from_sandbox(db, sandbox, 8)]
    with db.transaction() as conn:
        conn.execute("UPDATE diamonds SET color = 'FANCY', clarity = NULL, lab_grown = true WHERE id = %s", (ids[5],))
        conn.execute("UPDATE diamonds SET availability = 'SOLD' WHERE id = %s", (ids[6],))
        conn.execute("UPDATE diamonds SET feed_price = 99999.99, price = 119999.99, shape = 'OVAL' WHERE id = %s",
                     (ids[7],))


def _lenient(settings: Settings) -> Settings:
    # The ignored-auth check sends invalid credentials on purpose, many times from one address: the failure
    # limit (tested on its own) is lifted so that every such request reaches authentication.
    return settings.model_copy(update={"auth_failures_per_minute": 1_000_000})


def test_every_check_passes_for_valid_and_invalid_requests(
    db: Database, settings: Settings, keys: dict[str, str], sandbox: RunningSandbox, nivoda: NivodaClient
) -> None:
    _catalogue(db, sandbox)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    unbreakable = 0
    settings = _lenient(settings)
    with LocalRuntime(settings, db=db, feed=nivoda) as runtime:
        app = create_app(db=db, settings=settings, feed=nivoda, control=runtime.control)
        schema = schemathesis.openapi.from_asgi(OPENAPI_URL, app)
        headers = {"X-API-Key": keys["admin"]}
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for operation in operations:

                @given(case=operation.as_strategy(generation_mode=mode))
                @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                                     database=None, suppress_health_check=list(HealthCheck))
                def conforms(case: schemathesis.Case[Any]) -> None:
                    response = case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance],
                                                      additional_checks=[accepts_valid_data])
                    statuses[response.status_code] += 1

                try:
                    conforms()
                except Unsatisfiable:
                    # An operation with no parameters and no body has no invalid form to send.
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    unbreakable += 1
                except Exception as exc:  # collect every operation's failure, not just the first
                    failures.append(f"{mode.value} {operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert statuses[500] == 0
    assert unbreakable < len(operations) / 2
    assert all(statuses[code] for code in (200, 201, 422)), f"the run reached real work: {statuses}"


def test_the_coverage_phase_finds_nothing(
    db: Database, settings: Settings, keys: dict[str, str], sandbox: RunningSandbox, nivoda: NivodaClient
) -> None:
    _catalogue(db, sandbox)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    settings = _lenient(settings)
    with LocalRuntime(settings, db=db, feed=nivoda) as runtime:
        app = create_app(db=db, settings=settings, feed=nivoda, control=runtime.control)
        schema = schemathesis.openapi.from_asgi(OPENAPI_URL, app)
        schema.config.phases.update(phases=["coverage"])
        # Every operation runs to its last case: a failure early in one does not hide a later one.
        schema.config.update(headers={"X-API-Key": keys["admin"]}, continue_on_failure=True)
        schema.config.checks.update(included_check_names=["all"])

        @schema.hook
        def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
            return not (failure.code == RejectedPositiveData.code and _refused_for_reasons_no_schema_states(response))

        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                recorder = event.recorder
                statuses.update(i.response.status_code for i in recorder.interactions.values() if i.response)
                failures.extend(
                    f"{recorder.label} {check.name}: {str(check.failure_info.failure)[:1500]}"
                    for checks in recorder.checks.values() for check in checks if check.failure_info is not None)
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                failures.append(f"{type(event).__name__}: {event}"[:1500])
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    assert all(statuses[code] for code in (200, 201, 202, 405, 422)), f"every kind of answer was reached: {statuses}"
    assert statuses[500] == 0
