"""The GraphQL documents the Nivoda client sends, and the translation of a FeedQuery into their variables.

Every operation except `authenticate` runs inside `as(token: $token) { ... }`, so its data lies under
`data.as`. Variables are declared with the type names production queries use (`DiamondQuery`,
`DiamondOrder`, `OrderItemInput`), so a document that validates here validates against Nivoda.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opus.domain.models import FeedQuery

MAX_PAGE_LIMIT = 50  # Nivoda refuses a larger `limit`.

# The full field set a production integration selects (nivoda-api.md, "Every field seen in production
# queries"). Staging rejects `clarity`, `floInt`, `floCol` and `labgrown_type` with enum errors (pitfall 6);
# they stay selected because production needs them (clarity above all), so pointing this client at staging
# gives a FeedPermanentError naming the field rather than silently thinner records.
CERTIFICATE_FIELDS = """
  id lab certNumber pdfUrl shape fullShape carats cut polish symmetry color length width depth depthPercentage
  table crownAngle crownHeight pavAngle pavHeight pavDepth verified treated girdle culetSize girdleCondition
  culet_condition cut_style keyToSymbols comments f_color f_intensity f_overtone colorShade
  brown green blue gray mix_tinge milky bowtie eyeclean starLength lowerGirdle
  clarity floInt floCol labgrown_type labgrown image video country_of_origin
  v360 { id url }
  product_videos { id url loupe360_url type }
  product_images { id url loupe360_url type display_index }
"""

DIAMOND_FIELDS = f"""
  id availability HoldId NivodaStockId supplierStockId image video eyeClean brown green blue gray milky bowtie
  mine_of_origin supplier_video_link approval_type final_price show_measurements show_certificate_number
  return_window CertificateType scs_certificate country_of_polishing other
  v360 {{ id url }}
  delivery_time {{ express_timeline_applicable min_business_days max_business_days }}
  certificate {{ {CERTIFICATE_FIELDS} }}
  supplier {{ id name legal_name }}
"""

ITEM_FIELDS = f"""
  id price discount diamond_price markup_price markup_discount
  diamond {{ {DIAMOND_FIELDS} }}
"""

AUTHENTICATE = """
query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } }
}
"""

COUNT = """
query DiamondsCount($token: String!, $query: DiamondQuery!) {
  as(token: $token) { diamonds_by_query_count(query: $query) }
}
"""

# `total_count` is not selected: it is unreliable (pitfall 1) and counting is `diamonds_by_query_count`'s job.
PAGE = f"""
query DiamondsPage($token: String!, $query: DiamondQuery!, $offset: Int, $limit: Int, $order: DiamondOrder) {{
  as(token: $token) {{
    diamonds_by_query(query: $query, offset: $offset, limit: $limit, order: $order) {{
      items {{ {ITEM_FIELDS} }}
    }}
  }}
}}
"""

GET = f"""
query DiamondById($token: String!, $diamond_id: ID!) {{
  as(token: $token) {{ get_diamond_by_id(diamond_id: $diamond_id) {{ {ITEM_FIELDS} }} }}
}}
"""

CREATE_HOLD = """
mutation CreateHold($token: String!, $product_id: ID!) {
  as(token: $token) { create_hold(ProductId: $product_id, ProductType: Diamond) { id denied until } }
}
"""

CANCEL_HOLD = """
mutation CancelHold($token: String!, $hold_id: ID!) {
  as(token: $token) { cancel_hold(hold_id: $hold_id) { id } }
}
"""

CREATE_ORDER = """
mutation CreateOrder($token: String!, $items: [OrderItemInput!]!) {
  as(token: $token) { create_order(items: $items) }
}
"""

# Stable paging (pitfall 5): creation order does not change when a stone is repriced or updated.
PAGE_ORDER: dict[str, str] = {"type": "createdAt", "direction": "ASC"}


def is_empty_range(query: FeedQuery) -> bool:
    """True when the half-open price-per-carat range holds no whole dollar at all (`ppc_to <= ppc_from`)."""
    return query.ppc_from is not None and query.ppc_to is not None and query.ppc_to <= query.ppc_from


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with a `Z`; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def diamond_query(query: FeedQuery) -> dict[str, Any]:
    """The `DiamondQuery` input for a FeedQuery.

    Our ranges are half-open `[ppc_from, ppc_to)` in whole dollars; the feed's integer bounds are inclusive,
    so the upper bound sent is `ppc_to - 1`. Absent bounds are omitted rather than sent as null.
    """
    result: dict[str, Any] = {}
    ppc: dict[str, int] = {}
    if query.ppc_from is not None:
        ppc["from"] = query.ppc_from
    if query.ppc_to is not None:
        ppc["to"] = query.ppc_to - 1
    if ppc:
        result["dollar_per_carat"] = ppc
    updated: dict[str, str] = {}
    if query.updated_from is not None:
        updated["from"] = iso_utc(query.updated_from)
    if query.updated_to is not None:
        updated["to"] = iso_utc(query.updated_to)
    if updated:
        result["updated"] = updated
    if query.ids is not None:
        result["ids"] = list(query.ids)
    return result


def page_variables(query: FeedQuery, offset: int, limit: int) -> dict[str, Any]:
    """Variables of PAGE (without the token); ValueError for a limit outside 1..50 or a negative offset."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    return {"query": diamond_query(query), "offset": offset, "limit": limit, "order": dict(PAGE_ORDER)}


def order_items(offer_id: str, reference: str | None, comment: str | None) -> list[dict[str, str]]:
    """The `items` of CREATE_ORDER for one offer; optional fields are omitted when not given."""
    item: dict[str, str] = {"offerId": offer_id}
    if reference is not None:
        item["customer_order_number"] = reference
    if comment is not None:
        item["customer_comment"] = comment
    return [item]
