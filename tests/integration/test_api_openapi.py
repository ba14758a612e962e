"""The API's contract: the OpenAPI document (every route protected, described, scoped), the one error shape."""

from __future__ import annotations

import re

from api_conftest import Auth, assert_unauthorized
from fastapi.testclient import TestClient

from opus.api.app import create_app, is_protected
from opus.config import Settings
from opus.db.pool import Database

SEARCH = "/api/v2/diamonds"


# --- the OpenAPI document -------------------------------------------------------------------------------
def _operations(client: TestClient) -> list[tuple[str, str, dict[str, object]]]:
    document = client.get("/api/v2/openapi.json").json()
    return [(path, method, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_route_but_health_answers_401_without_credentials(client: TestClient) -> None:
    operations = _operations(client)
    assert len(operations) >= 22
    for path, method, _ in operations:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = client.request(method.upper(), concrete, json={})
        if path == "/health":
            assert response.status_code == 200
            continue
        assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
        assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_api_paths_are_401_before_404_and_404_with_credentials(client: TestClient, auth: Auth) -> None:
    assert_unauthorized(client.get("/api/v2/no-such-thing"))
    response = client.get("/api/v2/no-such-thing", headers=auth("read"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = client.patch(SEARCH, headers=auth("read"))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert client.get("/elsewhere").json()["error"]["code"] == "not_found"


def test_the_document_declares_security_scopes_and_descriptions(client: TestClient) -> None:
    document = client.get("/api/v2/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {
        "X-API-Key", "X-Client-Id", "X-Timestamp", "X-Nonce", "X-Signature"}
    assert all(s.get("description") for s in schemes.values())
    for path, method, op in _operations(client):
        assert op.get("description"), f"{method} {path} has no description"
        for parameter in op.get("parameters", []):  # type: ignore[attr-defined]
            assert parameter.get("description"), f"{method} {path} {parameter['name']} is not described"
        assert op.get("summary"), f"{method} {path} has no summary"
        if is_protected(path):
            assert op["security"] == [
                {"ApiKey": []}, {"HmacClientId": [], "HmacTimestamp": [], "HmacNonce": [], "HmacSignature": []}]
            assert op["x-required-scope"] in ("read", "trade", "admin"), f"{method} {path} has no scope"
            assert {"401", "403"} <= set(op["responses"])  # type: ignore[call-overload]
        else:
            assert op["security"] == []
    for name, schema in document["components"]["schemas"].items():
        assert schema.get("description"), f"schema {name} is not described"
        for prop, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{prop} is not described"


def test_docs_are_public(client: TestClient) -> None:
    assert client.get("/api/v2/docs").status_code == 200
    assert client.get("/api/v2/openapi.json").status_code == 200


def test_validation_errors_use_the_common_shape(client: TestClient, auth: Auth) -> None:
    response = client.get(SEARCH + "?limit=1000", headers=auth("read"))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"][0]["loc"] == ["query", "limit"]
    response = client.post("/api/v2/pricing-rules", content=b"{not json", headers={
        **auth("admin"), "Content-Type": "application/json"})
    assert response.status_code == 400, "a body that is not JSON is malformed, not invalid"
    assert response.json()["error"]["code"] == "invalid_body"


def test_a_lost_database_is_503_not_500(database_url: str, settings: Settings, keys: dict[str, str]) -> None:
    gone = Database(database_url, max_size=1, timeout_s=1)
    gone.close()
    with TestClient(create_app(db=gone, settings=settings, feed=None, control=None)) as lost:
        health = lost.get("/health")
        assert health.status_code == 503
        assert health.json()["error"]["details"] == {"database": "unavailable"}
        search = lost.get(SEARCH, headers={"X-API-Key": keys["read"]})
        assert search.status_code == 503
        assert search.json()["error"]["code"] == "database_unavailable"
        assert "Retry-After" in search.headers
