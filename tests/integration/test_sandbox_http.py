"""The sandbox over real HTTP on loopback: auth, paging, faults, admin changes and trading."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from opus.sandbox.runner import RunningSandbox, run_sandbox

AUTH = """query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } } }"""
PAGE = """query Page($token: String!, $query: DiamondQuery!, $offset: Int, $limit: Int, $order: DiamondOrder) {
  as(token: $token) {
    diamonds_by_query(query: $query, offset: $offset, limit: $limit, order: $order) {
      total_count items { id price diamond { id availability certificate { carats } } } } } }"""
COUNT = """query Count($token: String!, $query: DiamondQuery!) {
  as(token: $token) { diamonds_by_query_count(query: $query) } }"""
BY_ID = """query One($token: String!, $id: ID!) { as(token: $token) { get_diamond_by_id(diamond_id: $id) {
  id diamond { id availability HoldId } } } }"""
HOLD = """mutation Hold($token: String!, $id: ID!) { as(token: $token) {
  create_hold(ProductId: $id, ProductType: Diamond) { id denied until } } }"""
CANCEL = """mutation Cancel($token: String!, $id: ID!) { as(token: $token) { cancel_hold(hold_id: $id) { id } } }"""
ORDER = """mutation Order($token: String!, $items: [OrderItemInput!]!) { as(token: $token) {
  create_order(items: $items) } }"""


class Client:
    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.http = httpx.Client(timeout=10)
        self._token: str | None = None

    def post(self, document: str, headers: dict[str, str] | None = None, **variables: Any) -> httpx.Response:
        return self.http.post(self.sandbox.endpoint, json={"query": document, "variables": variables},
                              headers=headers)

    def gql(self, document: str, **variables: Any) -> dict[str, Any]:
        response = self.post(document, **variables)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    @property
    def token(self) -> str:
        if self._token is None:
            auth = self.gql(AUTH, username="sandbox", password="sandbox")
            self._token = auth["data"]["authenticate"]["username_and_password"]["token"]
        return self._token

    def scoped(self, document: str, **variables: Any) -> Any:
        body = self.gql(document, token=self.token, **variables)
        assert "errors" not in body, body
        return next(iter(body["data"]["as"].values()))

    def admin(self, name: str, **payload: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.sandbox.base_url}/admin/{name}", json=payload)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get(f"{self.sandbox.base_url}/admin/stats").json()
        return body

    def walk(self, query: dict[str, Any], limit: int = 50) -> list[str]:
        """Page a range the way the pipeline must: advance by what arrived, stop on an empty page."""
        seen: list[str] = []
        offset = 0
        for _ in range(1000):  # safety cap
            page = self.scoped(PAGE, query=query, offset=offset, limit=limit,
                               order={"type": "createdAt", "direction": "ASC"})
            if not page["items"]:
                return seen
            seen += [i["diamond"]["id"] for i in page["items"]]
            offset += len(page["items"])
        raise AssertionError("paging did not end")


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with run_sandbox(diamonds=600, seed=13) as running:
        yield running


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[Client]:
    c = Client(sandbox)
    yield c
    c.http.close()


def test_authenticate_bearer_and_as_token(client: Client) -> None:
    auth = client.gql(AUTH, username="sandbox", password="sandbox")["data"]["authenticate"]["username_and_password"]
    assert abs(auth["expires"] - (time.time() + 21600) * 1000) < 60_000  # epoch milliseconds, 6 h ahead
    bearer = {"Authorization": f"Bearer {auth['token']}"}
    response = client.post("{ diamonds_by_query_count(query: {}) }", headers=bearer)
    assert response.status_code == 200
    assert response.json() == {"data": {"diamonds_by_query_count": 600}}
    assert client.scoped(COUNT, query={}) == 600
    wrong = client.gql(AUTH, username="sandbox", password="nope")
    assert wrong["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    missing = client.gql("{ diamonds_by_query_count(query: {}) }")
    assert "unauthorized" in missing["errors"][0]["message"]


def test_expired_token_is_refused() -> None:
    with run_sandbox(diamonds=50, seed=1, token_ttl_s=0.3) as sb:
        c = Client(sb)
        assert c.scoped(COUNT, query={}) == 50
        time.sleep(0.5)
        body = c.gql(COUNT, token=c.token, query={})
        assert body["data"] == {"as": None}
        assert "token expired" in body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        c.http.close()


def test_validation_errors_arrive_with_http_200(client: Client) -> None:
    response = client.post("{ as(token: \"x\") { diamonds_by_query(query: {}) { items { carat } } } }")
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    body = client.gql(PAGE, token=client.token, query={}, limit=51)
    assert "at most 50" in body["errors"][0]["message"]
    assert client.http.post(client.sandbox.endpoint, content=b"not json").status_code == 400


def test_price_per_carat_partitions_page_to_every_stone_once_despite_short_pages(client: Client) -> None:
    client.admin("faults", short_page_rate=0.5, seed=3)
    bounds = [0, 300, 600, 1200, 3000, 10**7]
    seen: list[str] = []
    for a, b in itertools.pairwise(bounds):
        part = {"dollar_per_carat": {"from": a, "to": b - 1}, "updated": {"to": "2030-01-01T00:00:00Z"}}
        got = client.walk(part, limit=20)
        assert len(got) == client.scoped(COUNT, query=part)
        seen += got
    assert len(seen) == len(set(seen)) == 600


def test_total_count_shrinks_with_offset(client: Client) -> None:
    query = {"labgrown": True}
    exact = client.scoped(COUNT, query=query)
    page = client.scoped(PAGE, query=query, offset=exact - 13, limit=50)
    assert page["total_count"] == 13
    assert len(page["items"]) == 13


def test_fail_next_and_rates(client: Client) -> None:
    client.admin("faults", fail_next=[429, 500])
    first = client.post(AUTH, username="sandbox", password="sandbox")
    assert first.status_code == 429
    assert first.headers["retry-after"] == "1"
    assert client.post(AUTH, username="sandbox", password="sandbox").status_code == 500
    assert client.post(AUTH, username="sandbox", password="sandbox").status_code == 200
    client.admin("faults", rate_429=1.0)
    assert client.post(AUTH, username="sandbox", password="sandbox").status_code == 429
    assert client.http.get(f"{client.sandbox.base_url}/admin/faults").json()["rate_429"] == 1.0
    client.admin("faults")  # an empty configuration clears every fault
    assert client.post(AUTH, username="sandbox", password="sandbox").status_code == 200


def test_latency_is_injected(client: Client) -> None:
    client.admin("faults", latency_ms=300)
    started = time.perf_counter()
    client.post(AUTH, username="sandbox", password="sandbox")
    assert time.perf_counter() - started >= 0.3


def test_admin_reprice_bumps_updated(client: Client) -> None:
    before = datetime.now(UTC).isoformat()
    changed = client.admin("reprice", fraction=0.05, factor=1.1, seed=1)["ids"]
    assert len(changed) == 30
    recent = client.walk({"updated": {"from": before}})
    assert sorted(recent) == sorted(changed)
    live = client.sandbox.inventory.get(changed[0])
    assert live is not None
    assert client.sandbox.inventory.stats()["count"] == 600


def test_admin_remove_add_and_availability(client: Client) -> None:
    removed = client.admin("remove", count=10, seed=4)["ids"]
    assert client.scoped(COUNT, query={}) == 590
    assert client.scoped(BY_ID, id=removed[0]) is None
    assert not set(removed) & set(client.walk({}))
    added = client.admin("add", count=4)
    assert client.stats()["count"] == 594
    assert len(added["offer_ids"]) == 4
    assert client.scoped(BY_ID, id=added["ids"][0])["id"] in added["offer_ids"]
    sold = client.admin("availability", count=3, availability="SOLD", seed=5)["ids"]
    assert client.scoped(COUNT, query={"availability": ["SOLD"]}) == 3
    offer = client.scoped(BY_ID, id=sold[0])["id"]
    body = client.gql(ORDER, token=client.token, items=[{"offerId": offer}])
    assert body["data"]["as"]["create_order"] is None
    assert "sold" in body["errors"][0]["message"]
    bad = client.http.post(f"{client.sandbox.base_url}/admin/remove", json={"count": "ten"})
    assert bad.status_code == 400


def test_trading_over_http(client: Client) -> None:
    stone = next(s for s in client.sandbox.inventory.stones() if s.availability == "AVAILABLE")
    hold = client.scoped(HOLD, id=stone.stone_id)
    assert hold["denied"] is False
    assert hold["id"]
    assert client.scoped(BY_ID, id=stone.stone_id)["diamond"] == {
        "id": stone.stone_id, "availability": "ON HOLD", "HoldId": hold["id"]}
    assert client.scoped(HOLD, id=stone.stone_id)["denied"] is True
    assert client.scoped(CANCEL, id=hold["id"]) == {"id": hold["id"]}
    order_id = client.scoped(ORDER, items=[{"offerId": stone.offer_id, "customer_order_number": "PO-9"}])
    assert isinstance(order_id, str)
    assert order_id
    assert client.scoped(BY_ID, id=stone.stone_id)["diamond"]["availability"] == "SOLD"
    unknown = client.gql(ORDER, token=client.token, items=[{"offerId": "nope"}])
    assert "unknown offerId" in unknown["errors"][0]["message"]


def test_runner_stops_cleanly() -> None:
    with run_sandbox(diamonds=10, seed=2) as sb:
        assert httpx.get(f"{sb.base_url}/health").json() == {"status": "ok", "diamonds": 10}
        url = sb.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
