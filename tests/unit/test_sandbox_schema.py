"""The sandbox schema executed directly: strictness, production queries, auth and trading."""

from __future__ import annotations

import re
from typing import Any

import pytest

from opus.sandbox.auth import TokenStore
from opus.sandbox.inventory import Inventory
from opus.sandbox.resolvers import GraphQLExecutor, RequestContext

# Every field nivoda-api.md lists under "Every field seen in production queries".
CERTIFICATE_FIELDS = """
  id lab certNumber pdfUrl shape fullShape carats cut polish symmetry color length width depth depthPercentage
  table crownAngle crownHeight pavAngle pavHeight pavDepth verified treated girdle culetSize girdleCondition
  culet_condition cut_style keyToSymbols comments f_color f_intensity f_overtone colorShade brown green blue gray
  mix_tinge milky bowtie eyeclean starLength lowerGirdle clarity floInt floCol labgrown_type labgrown image video
  country_of_origin v360 { id url }
  product_videos { id url loupe360_url type } product_images { id url loupe360_url type display_index }
"""
ITEM_FIELDS = f"""
  id price discount diamond_price markup_price markup_discount
  diamond {{
    id availability HoldId NivodaStockId supplierStockId image video eyeClean brown green blue gray milky bowtie
    mine_of_origin supplier_video_link approval_type final_price show_measurements show_certificate_number
    return_window CertificateType scs_certificate country_of_polishing other v360 {{ id url }}
    delivery_time {{ express_timeline_applicable min_business_days max_business_days }}
    certificate {{ {CERTIFICATE_FIELDS} }}
    supplier {{ id name legal_name }}
  }}
"""
PRODUCTION_QUERY = f"""
query Diamonds($token: String!, $query: DiamondQuery!, $offset: Int, $limit: Int, $order: DiamondOrder) {{
  as(token: $token) {{
    diamonds_by_query(query: $query, offset: $offset, limit: $limit, order: $order) {{
      total_count
      items {{ {ITEM_FIELDS} }}
    }}
    diamonds_by_query_count(query: $query)
  }}
}}
"""
AUTHENTICATE = """
query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } }
}
"""
NOW_S = 1_800_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW_S

    def __call__(self) -> float:
        return self.now


class Sandbox:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.inventory = Inventory(400, seed=21, clock=self.clock)
        self.tokens = TokenStore("sandbox", "sandbox", 3600, self.clock)
        self.executor = GraphQLExecutor()

    def run(self, document: str, bearer: str | None = None, operation: str | None = None,
            **variables: Any) -> dict[str, Any]:
        return self.executor.execute(document, variables or None, operation,
                                     RequestContext(self.inventory, self.tokens, bearer))

    def token(self) -> str:
        body = self.run(AUTHENTICATE, username="sandbox", password="sandbox")
        token: str = body["data"]["authenticate"]["username_and_password"]["token"]
        return token

    def scoped(self, selection: str, **variables: Any) -> dict[str, Any]:
        """Run `selection` inside as(token:), declaring variables from their Python values."""
        types = {"query": "DiamondQuery!", "order": "DiamondOrder", "items": "[OrderItemInput!]!",
                 "offset": "Int", "limit": "Int", "id": "ID!"}
        decl = ", ".join(f"${k}: {types[k]}" for k in variables)
        op = "mutation" if "create_" in selection or "cancel_" in selection else "query"
        head = f"{op} ($token: String!{', ' if decl else ''}{decl})"
        return self.run(f"{head} {{ as(token: $token) {{ {selection} }} }}", token=self.token(), **variables)


@pytest.fixture
def sb() -> Sandbox:
    return Sandbox()


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def test_production_query_naming_every_field_validates_and_answers(sb: Sandbox) -> None:
    body = sb.run(PRODUCTION_QUERY, token=sb.token(), query={"labgrown": True}, offset=0, limit=50,
                  order={"type": "createdAt", "direction": "ASC"})
    assert "errors" not in body
    page = body["data"]["as"]["diamonds_by_query"]
    assert len(page["items"]) == 50
    assert body["data"]["as"]["diamonds_by_query_count"] == page["total_count"]
    item = page["items"][0]
    assert set(item) == top_level_names(ITEM_FIELDS)
    assert {"certificate", "supplier", "delivery_time", "v360", "eyeClean"} <= set(item["diamond"])
    assert set(item["diamond"]["certificate"]) == top_level_names(CERTIFICATE_FIELDS)


def top_level_names(selection: str) -> set[str]:
    while "{" in selection:  # drop innermost sub-selections until only top-level names remain
        selection = re.sub(r"\{[^{}]*\}", " ", selection)
    return set(selection.split())


@pytest.mark.parametrize(("query", "message"), [
    ("{ as(token: \"t\") { diamonds_by_query(query: {}) { items { id carat } } } }", "Cannot query field 'carat'"),
    ("{ as(token: \"t\") { diamonds_by_query(query: {}, first: 5) { total_count } } }", "Unknown argument 'first'"),
    ("{ as(token: \"t\") { diamonds_by_query(query: {colour: [D]}) { total_count } } }", "unknown field 'colour'"),
    ("{ as(token: \"t\") { diamonds_by_query(query: {color: [DD]}) { total_count } } }", "does not exist"),
    ("{ as(token: \"t\") { diamonds_by_query(query: {}) { items { diamond } } } }", "must have a selection"),
    ("{ as(token: \"t\") { diamonds_by_query_count(query: {}) ", "Syntax Error"),
])
def test_invalid_documents_fail_like_a_graphql_server(sb: Sandbox, query: str, message: str) -> None:
    body = sb.run(query)
    assert "data" not in body
    assert message in body["errors"][0]["message"]
    assert codes(body)[0] in ("GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED")


def test_limit_above_50_is_an_error_and_defaults_apply(sb: Sandbox) -> None:
    body = sb.scoped("diamonds_by_query(query: $query, limit: $limit) { total_count }", query={}, limit=51)
    assert body["data"]["as"]["diamonds_by_query"] is None
    assert "50" in body["errors"][0]["message"]
    body = sb.scoped("diamonds_by_query(query: $query) { total_count items { id } }", query={})
    page = body["data"]["as"]["diamonds_by_query"]
    assert len(page["items"]) == 50
    assert page["total_count"] == 400
    assert [i["id"] for i in page["items"]] == [s.offer_id for s in sb.inventory.stones()[:50]]


def test_list_filters_accept_a_single_object_and_realistic_enums_validate(sb: Sandbox) -> None:
    literal = """diamonds_by_query_count(query: {
      sizes: {from: 0.3, to: 10}, color: D, clarity: [FL, IF, VVS1, VVS2, VS1, VS2, SI1, SI2, I1],
      cut: [EX, VG, GD, IDEAL], polish: EX, symmetry: [EX, VG], flouresence: [NON, FNT, MED, STG, VST],
      availability: AVAILABLE, certificate_lab: [GIA, IGI, HRD, GCAL], shapes: "ROUND",
      has_image: true, has_video: false, has_v360: false, excludeFairPoorCuts: true, hide_memo: true,
      certificate_numbers: ["1"], table_percentage: {from: 50}, depth_percentage: {to: 80}, ratio: {from: 1},
      length_mm: {from: 1}, width_mm: {from: 1}, depth_mm: {from: 1}, ids: ["x"], luster: [1],
      dollar_value: {from: 1, to: 2}, dollar_per_carat: {from: 1}, updated: {from: "2024-01-01T00:00:00Z"},
      labgrown: false})"""
    body = sb.scoped(literal)
    assert "errors" not in body
    assert body["data"]["as"]["diamonds_by_query_count"] == 0
    one = sb.scoped("diamonds_by_query_count(query: $query)", query={"sizes": {"from": 1.0, "to": 2.0}})
    many = sb.scoped("diamonds_by_query_count(query: $query)", query={"sizes": [{"from": 1.0, "to": 2.0}]})
    expected = sum(100 <= s.ct100 <= 200 for s in sb.inventory.stones())
    assert one["data"]["as"]["diamonds_by_query_count"] == many["data"]["as"]["diamonds_by_query_count"] == expected


def test_total_count_is_unreliable_but_the_count_query_is_exact(sb: Sandbox) -> None:
    q = {"labgrown": True}
    exact = sb.inventory.count(q)
    body = sb.scoped("diamonds_by_query(query: $query, offset: $offset, limit: $limit) { total_count items { id } }"
                     " diamonds_by_query_count(query: $query)", query=q, offset=exact - 13, limit=50)
    assert body["data"]["as"]["diamonds_by_query_count"] == exact
    assert body["data"]["as"]["diamonds_by_query"]["total_count"] == 13


def test_bad_input_values_are_reported(sb: Sandbox) -> None:
    body = sb.scoped("diamonds_by_query_count(query: $query)", query={"updated": {"from": "yesterday"}})
    assert "ISO-8601" in body["errors"][0]["message"]
    assert codes(body) == ["BAD_USER_INPUT"]
    body = sb.scoped("diamonds_by_query_count(query: $query)", query={"dollar_value": {"from": "cheap"}})
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]


# ---- auth ----------------------------------------------------------------------------------------

def test_authenticate_returns_token_and_epoch_ms_expiry(sb: Sandbox) -> None:
    body = sb.run(AUTHENTICATE, operation="Authenticate", username="sandbox", password="sandbox")
    auth = body["data"]["authenticate"]["username_and_password"]
    assert len(auth["token"]) >= 32
    assert auth["expires"] == int((NOW_S + 3600) * 1000)
    assert auth["token"] != sb.token()


def test_wrong_password_missing_unknown_and_expired_tokens(sb: Sandbox) -> None:
    body = sb.run(AUTHENTICATE, username="sandbox", password="wrong")
    assert body["data"]["authenticate"]["username_and_password"] is None
    assert "unauthorized" in body["errors"][0]["message"]
    assert codes(body) == ["UNAUTHENTICATED"]
    count = "{ diamonds_by_query_count(query: {}) }"
    assert codes(sb.run(count)) == ["UNAUTHENTICATED"]
    assert codes(sb.run(count, bearer="forged")) == ["UNAUTHENTICATED"]
    token = sb.token()
    assert sb.run(count, bearer=token) == {"data": {"diamonds_by_query_count": 400}}
    sb.clock.now += 3601
    body = sb.run(count, bearer=token)
    assert "token expired" in body["errors"][0]["message"]
    assert codes(body) == ["UNAUTHENTICATED"]
    body = sb.run("query ($t: String!) { as(token: $t) { diamonds_by_query_count(query: {}) } }", t=token)
    assert body["data"] == {"as": None}
    assert codes(body) == ["UNAUTHENTICATED"]


# ---- trading -------------------------------------------------------------------------------------

def test_hold_cancel_and_order_through_graphql(sb: Sandbox) -> None:
    stone = next(s for s in sb.inventory.stones() if s.availability == "AVAILABLE")
    hold = "create_hold(ProductId: $id, ProductType: Diamond) { id denied until }"
    first = sb.scoped(hold, id=stone.stone_id)["data"]["as"]["create_hold"]
    assert first["denied"] is False
    assert first["id"]
    assert first["until"].startswith("2027-01-16")
    second = sb.scoped(hold, id=stone.stone_id)["data"]["as"]["create_hold"]
    assert second["denied"] is True
    assert second["id"] in (None, first["id"])
    body = sb.scoped("cancel_hold(hold_id: $id) { id }", id=first["id"])
    assert body["data"]["as"]["cancel_hold"] == {"id": first["id"]}
    assert stone.availability == "AVAILABLE"
    items = [{"offerId": stone.offer_id, "customer_comment": "c", "customer_order_number": "PO-1",
              "return_option": False, "destinationId": "d1"}]
    order = sb.scoped("create_order(items: $items)", items=items)
    assert isinstance(order["data"]["as"]["create_order"], str)
    assert stone.availability == "SOLD"
    again = sb.scoped("create_order(items: $items)", items=items)
    assert again["data"]["as"]["create_order"] is None
    assert "sold" in again["errors"][0]["message"]
    missing = sb.scoped("create_order(items: $items)", items=[{"customer_comment": "no offer"}])
    assert missing["data"] is None
    assert "offerId" in missing["errors"][0]["message"]


def test_get_diamond_by_id_uses_the_stone_id(sb: Sandbox) -> None:
    stone = sb.inventory.stones()[3]
    select = "get_diamond_by_id(diamond_id: $id) { id diamond { id } }"
    item = sb.scoped(select, id=stone.stone_id)["data"]["as"]["get_diamond_by_id"]
    assert item == {"id": stone.offer_id, "diamond": {"id": stone.stone_id}}
    assert sb.scoped(select, id=stone.offer_id)["data"]["as"]["get_diamond_by_id"] is None
    sb.inventory.remove(0, ids=[stone.stone_id])
    assert sb.scoped(select, id=stone.stone_id)["data"]["as"]["get_diamond_by_id"] is None
