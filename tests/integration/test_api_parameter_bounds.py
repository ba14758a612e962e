"""Every parameter is bounded by its schema before it reaches SQL: numbers that do not fit their column,
reversed ranges and text the database cannot store are a 422 in the one error shape, never a 500."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from api_conftest import AppFactory, Auth, insert_diamonds
from fastapi.testclient import TestClient

from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"
RULES = "/api/v2/pricing-rules"
CARAT_FILTERS = ("carat_min", "carat_max")
MONEY_FILTERS = ("price_min", "price_max", "feed_price_min", "feed_price_max")
# Values that do not fit numeric(8, 3) (carats) or numeric(12, 2) (money), or are not numbers at all.
UNFIT = ("1e-16384", "1e400", "-1e400", "NaN", "Infinity", "-1", "1e-3000")
TOO_PRECISE = {"carat_min": "1.0001", "carat_max": "0.0005", "price_min": "1.001", "price_max": "0.005",
               "feed_price_min": "10.125", "feed_price_max": "1E-3"}
TOO_LARGE = {"carat_min": "100000", "carat_max": "1e5", "price_min": "10000000000", "price_max": "1E+10",
             "feed_price_min": "99999999999.99", "feed_price_max": "12345678901"}


@pytest.fixture
def lenient(make_client: AppFactory) -> TestClient:
    """A client that shows a server error as the 500 a caller would see, instead of raising it."""
    return make_client(raise_server_exceptions=False)


def assert_validation_error(response: httpx.Response, *names: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == "validation_failed"
    for name in names:
        assert name in error["message"], f"the message names {name}: {error['message']}"
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize("value", UNFIT)
@pytest.mark.parametrize("name", CARAT_FILTERS + MONEY_FILTERS)
def test_a_decimal_filter_that_does_not_fit_its_column_is_422(
    lenient: TestClient, auth: Auth, name: str, value: str
) -> None:
    response = lenient.get(SEARCH, params={name: value}, headers=auth("read"))
    error = assert_validation_error(response, name)
    assert any(problem["loc"][-1] == name for problem in error["details"]), error


@pytest.mark.parametrize("name", CARAT_FILTERS + MONEY_FILTERS)
def test_a_decimal_filter_with_too_many_places_or_digits_is_422(lenient: TestClient, auth: Auth, name: str) -> None:
    for value in (TOO_PRECISE[name], TOO_LARGE[name]):
        assert_validation_error(lenient.get(SEARCH, params={name: value}, headers=auth("read")), name)


@pytest.mark.parametrize("name", CARAT_FILTERS + MONEY_FILTERS)
def test_a_value_that_fits_once_its_spare_zeros_are_dropped_is_accepted(
    lenient: TestClient, db: Database, auth: Auth, name: str
) -> None:
    """Zeros beyond the column's scale change nothing; they must not reach PostgreSQL as a numeric it refuses."""
    [stone] = insert_diamonds(db, [{"carats": Decimal("1.000"), "feed_price": Decimal("1000.00")}])
    bound = {"carat_min": "1", "carat_max": "1", "price_min": "1200", "price_max": "1200",
             "feed_price_min": "1000", "feed_price_max": "1000"}[name]
    for value in (f"{bound}.{'0' * 20000}", f"{bound}{'0' * 3}e-3", "0e-16384" if name.endswith("min") else None):
        if value is None:
            continue
        response = lenient.get(SEARCH, params={name: value}, headers=auth("read"))
        assert response.status_code == 200, f"{name}={value[:30]}...: {response.text[:300]}"
        assert [item["id"] for item in response.json()["items"]] == [stone]


@pytest.mark.parametrize(("low", "high"), [("carat_min", "carat_max"), ("price_min", "price_max"),
                                           ("feed_price_min", "feed_price_max")])
def test_a_reversed_range_is_422_naming_both_parameters(
    client: TestClient, db: Database, auth: Auth, low: str, high: str
) -> None:
    insert_diamonds(db, [{}])
    assert_validation_error(client.get(SEARCH, params={low: "2", high: "1"}, headers=auth("read")), low, high)
    same = client.get(SEARCH, params={low: "1200", high: "1200"} if "price" in low else {low: "1", high: "1"},
                      headers=auth("read"))
    assert same.status_code == 200, "ranges are inclusive: min == max is a valid range"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"{SEARCH}/9223372036854775808", {}),
        (f"{SEARCH}/-1", {}),
        (SEARCH, {"limit": "1e3"}),
        (SEARCH, {"next": "x" * 513}),
        (SEARCH, {"shapes": "R" * 201}),
        (SEARCH, {"shapes": ",".join(["ROUND"] * 51)}),
        ("/api/v2/analytics/errors", {"before_id": "9223372036854775808"}),
        ("/api/v2/analytics/alerts", {"before_id": "0"}),
        ("/api/v2/analytics/runs", {"offset": "-1"}),
        ("/api/v2/analytics/runs", {"offset": "1000001"}),
        ("/api/v2/analytics/runs/not-a-uuid", {}),
        ("/api/v2/analytics/suppliers", {"limit": "1001"}),
        (f"{RULES}/9223372036854775808", {}),
    ],
)
def test_integer_text_and_path_parameters_are_bounded(
    lenient: TestClient, auth: Auth, path: str, params: dict[str, str]
) -> None:
    assert_validation_error(lenient.get(path, params=params, headers=auth("admin")))


RULE = {"priority": 1, "markup_ratio": "1.2"}


@pytest.mark.parametrize("field", ["carat_min", "carat_max", "feed_price_min", "feed_price_max", "markup_ratio"])
@pytest.mark.parametrize("value", ["1e-16384", "1e400", "NaN", "1.00001", 1e308, "99999999999999"])
def test_a_rule_number_that_does_not_fit_its_column_is_422(
    lenient: TestClient, auth: Auth, field: str, value: Any
) -> None:
    response = lenient.post(RULES, json={**RULE, field: value}, headers=auth("admin"))
    assert_validation_error(response, field)
    assert len(lenient.get(RULES, headers=auth("read")).json()) == 1, "nothing was stored"


def test_rule_numbers_with_spare_zeros_are_stored_at_the_column_scale(lenient: TestClient, auth: Auth) -> None:
    body = {**RULE, "markup_ratio": "1.5" + "0" * 20000, "carat_min": "0e-16384", "feed_price_max": "2500.000"}
    response = lenient.post(RULES, json=body, headers=auth("admin"))
    assert response.status_code == 201, response.text[:300]
    rule = response.json()["rule"]
    assert (rule["markup_ratio"], rule["carat_min"], rule["feed_price_max"]) == ("1.5000", "0.000", "2500.00")


@pytest.mark.parametrize("field", ["name", "feed"])
def test_rule_text_the_database_cannot_store_is_422(lenient: TestClient, auth: Auth, field: str) -> None:
    # A lone surrogate is valid JSON text but not UTF-8, so PostgreSQL could never store it.
    content = b'{"priority": 1, "markup_ratio": "1.2", "FIELD": "a\\ud800b"}'.replace(b"FIELD", field.encode())
    response = lenient.post(RULES, content=content, headers={**auth("admin"), "Content-Type": "application/json"})
    assert_validation_error(response, field)


def test_an_availability_reason_the_database_cannot_store_is_422(
    lenient: TestClient, db: Database, auth: Auth
) -> None:
    [stone] = insert_diamonds(db, [{}])
    content = b'{"availability": "MEMO", "reason": "\\udfff"}'
    response = lenient.post(f"{SEARCH}/{stone}/availability", content=content,
                            headers={**auth("admin"), "Content-Type": "application/json"})
    assert_validation_error(response, "reason")
