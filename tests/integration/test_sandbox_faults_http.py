"""Each fault kind of the sandbox over real HTTP on loopback, set at run time through /admin/faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opus.sandbox.runner import RunningSandbox, run_sandbox

AUTH = """query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } } }"""
COUNT = """query Count($token: String!, $query: DiamondQuery!) {
  as(token: $token) { diamonds_by_query_count(query: $query) } }"""
PAGE = """query Page($token: String!, $query: DiamondQuery!, $offset: Int, $limit: Int) {
  as(token: $token) { diamonds_by_query(query: $query, offset: $offset, limit: $limit) {
    items { id price diamond { id eyeClean certificate { shape } } } } } }"""
STAGING_PROBE = """query Probe($token: String!, $query: DiamondQuery!) {
  as(token: $token) {
    diamonds_by_query(query: $query, limit: 1) { items { diamond { certificate { clarity } } } } } }"""


class Client:
    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(timeout=10)

    def post(self, document: str, timeout: float | None = None, **variables: Any) -> httpx.Response:
        return self.http.post(self.sandbox.endpoint, json={"query": document, "variables": variables},
                              timeout=timeout or 10)

    def token(self) -> str:
        body = self.post(AUTH, username="sandbox", password="sandbox").json()
        token: str = body["data"]["authenticate"]["username_and_password"]["token"]
        return token

    def admin(self, name: str, **payload: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.sandbox.base_url}/admin/{name}", json=payload)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def status(self) -> int:
        return self.post(AUTH, username="sandbox", password="sandbox").status_code


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=300, seed=19) as running:
        yield running


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[Client]:
    c = Client(sandbox)
    yield c
    c.admin("reset")
    c.http.close()


def test_injected_429_carries_the_configured_retry_after(client: Client) -> None:
    client.admin("faults", rate_429=1.0, retry_after_s=7)
    response = client.post(AUTH, username="sandbox", password="sandbox")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


def test_5xx_in_an_exact_sequence_and_every_nth_request(client: Client) -> None:
    client.admin("faults", fail_next=[500, 502, 503])
    assert [client.status() for _ in range(4)] == [500, 502, 503, 200]
    client.admin("faults", every_502=3)
    assert [client.status() for _ in range(6)] == [200, 200, 502, 200, 200, 502]


def test_slow_answers_outlast_a_client_timeout(client: Client) -> None:
    client.admin("faults", fail_next=["slow"], slow_ms=1500)
    with pytest.raises(httpx.ReadTimeout):
        client.post(AUTH, timeout=0.4, username="sandbox", password="sandbox")
    assert client.status() == 200


def test_a_dropped_connection_gets_no_answer(client: Client) -> None:
    client.admin("faults", fail_next=["drop"])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post(AUTH, username="sandbox", password="sandbox")
    assert client.status() == 200  # the next request, on a new connection, is served


def test_graphql_errors_arrive_with_http_200(client: Client) -> None:
    client.admin("faults", rate_graphql_error=1.0)
    response = client.post(AUTH, username="sandbox", password="sandbox")
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


def test_a_token_expires_mid_run_after_n_requests(client: Client) -> None:
    client.admin("faults", token_max_requests=3)
    token = client.token()
    answers = [client.post(COUNT, token=token, query={}).json() for _ in range(4)]
    assert [a["data"]["as"] for a in answers[:3]] == [{"diamonds_by_query_count": 300}] * 3
    assert answers[3]["data"] == {"as": None}
    assert answers[3]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "token expired" in answers[3]["errors"][0]["message"]
    fresh = client.token()  # re-authenticating, as the spec says a client should, works
    assert client.post(COUNT, token=fresh, query={}).json()["data"]["as"]["diamonds_by_query_count"] == 300


def test_a_range_returns_rows_past_its_count(client: Client) -> None:
    client.admin("faults", rows_past_count=0.3)
    token = client.token()
    query = {"dollar_per_carat": {"from": 0, "to": 10**7}}
    counted = client.post(COUNT, token=token, query=query).json()["data"]["as"]["diamonds_by_query_count"]
    seen: list[str] = []
    while True:
        page = client.post(PAGE, token=token, query=query, offset=len(seen), limit=50).json()
        items = page["data"]["as"]["diamonds_by_query"]["items"]
        if not items:
            break
        seen += [i["diamond"]["id"] for i in items]
    assert counted < 0.8 * 300
    assert len(seen) == len(set(seen)) == 300


def test_malformed_records_are_applied_after_execution(client: Client) -> None:
    client.admin("faults", malformed={"null_id": 1.0, "price_not_number": 1.0, "wrong_type": 1.0,
                                      "eye_clean_text": 1.0}, seed=2)
    token = client.token()
    items = client.post(PAGE, token=token, query={}, limit=10).json()["data"]["as"]["diamonds_by_query"]["items"]
    assert len(items) == 10
    assert all(i["diamond"]["id"] is None for i in items)
    assert all(i["price"] == "n/a" for i in items)  # not an Int: no GraphQL server would let this through
    assert all(isinstance(i["diamond"]["certificate"]["shape"], dict) for i in items)
    assert all(i["diamond"]["eyeClean"] == "100%" for i in items)


def test_a_truncated_body_is_not_json(client: Client) -> None:
    client.admin("faults", fail_next=["truncate"])
    response = client.post(AUTH, username="sandbox", password="sandbox")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert response.content.startswith(b'{"data":')


def test_get_faults_shows_the_configuration_and_reset_turns_everything_off(client: Client) -> None:
    token = client.token()
    client.admin("faults", rate_503=0.5, every_drop=9, malformed={"labgrown_null": 0.2})
    client.admin("config", staging=True, throttle_rps=1000)
    shown = client.http.get(f"{client.sandbox.base_url}/admin/faults").json()
    assert (shown["rate_503"], shown["every_drop"], shown["malformed"]) == (0.5, 9, {"labgrown_null": 0.2})
    client.admin("faults", malformed={"labgrown_null": 0.2})
    assert "clarity" in client.post(STAGING_PROBE, token=token, query={}).json()["errors"][0]["message"]
    reset = client.admin("reset")
    assert reset["faults"]["rate_503"] == 0.0
    assert reset["config"]["staging"] is False
    assert reset["config"]["throttle_rps"] is None
    assert "errors" not in client.post(STAGING_PROBE, token=client.token(), query={}).json()
    bad = client.http.post(f"{client.sandbox.base_url}/admin/faults", json={"rate_drop": "often"})
    assert bad.status_code == 400
    assert "rate_drop" in bad.json()["error"]
