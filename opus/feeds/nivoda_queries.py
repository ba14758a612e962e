"""The GraphQL documents the Nivoda client sends, and the translation of a FeedQuery into their variables.

Every operation except `authenticate` runs inside `as(token: $token) { ... }`, so its data lies under
`data.as`. Variables are declared with the type names production queries use (`DiamondQuery`,
`DiamondOrder`, `OrderItemInput`), so a document that validates here validates against Nivoda.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opus.domain.heatmap import AXIS_MAX
from opus.domain.models import FeedQuery

MAX_PAGE_LIMIT = 50  # Nivoda refuses a larger `limit`.

# Staging rejects these certificate fields with enum errors (pitfall 6). Production needs them (clarity above
# all), so they are selected unless the client is told it talks to staging (NIVODA_STAGING): pointed at staging
# by mistake, the client gets a FeedPermanentError naming the field rather than silently thinner records.
STAGING_REJECTED_FIELDS = ("clarity", "floInt", "floCol", "labgrown_type")


def _certificate_fields(staging: bool) -> str:
    rejected = "" if staging else " ".join(STAGING_REJECTED_FIELDS)
    return f"""
  id lab certNumber pdfUrl shape fullShape carats cut polish symmetry color length width depth depthPercentage
  table crownAngle crownHeight pavAngle pavHeight pavDepth verified treated girdle culetSize girdleCondition
  culet_condition cut_style keyToSymbols comments f_color f_intensity f_overtone colorShade
  brown green blue gray mix_tinge milky bowtie eyeclean starLength lowerGirdle
  {rejected} labgrown image video country_of_origin
  v360 {{ id url }}
  product_videos {{ id url loupe360_url type }}
  product_images {{ id url loupe360_url type display_index }}
"""


def _item_fields(staging: bool) -> str:
    """The full field set a production integration selects (nivoda-api.md, "Every field seen in production
    queries"), less the fields staging rejects when `staging`."""
    diamond = f"""
  id availability HoldId NivodaStockId supplierStockId image video eyeClean brown green blue gray milky bowtie
  mine_of_origin supplier_video_link approval_type final_price show_measurements show_certificate_number
  return_window CertificateType scs_certificate country_of_polishing other
  v360 {{ id url }}
  delivery_time {{ express_timeline_applicable min_business_days max_business_days }}
  certificate {{ {_certificate_fields(staging)} }}
  supplier {{ id name legal_name }}
"""
    return f"""
  id price discount diamond_price markup_price markup_discount
  diamond {{ {diamond} }}
"""


CERTIFICATE_FIELDS = _certificate_fields(staging=False)
ITEM_FIELDS = _item_fields(staging=False)

AUTHENTICATE = """
query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token expires } }
}
"""

# `expires` is optional to us: a server whose schema does not know it (or names it otherwise) must not stop the
# login. The token alone is enough; its lifetime is then assumed to be the documented 6 hours.
AUTHENTICATE_TOKEN_ONLY = """
query Authenticate($username: String!, $password: String!) {
  authenticate { username_and_password(username: $username, password: $password) { token } }
}
"""  # noqa: S105 - a GraphQL document naming the password variable, not a password

COUNT = """
query DiamondsCount($token: String!, $query: DiamondQuery!) {
  as(token: $token) { diamonds_by_query_count(query: $query) }
}
"""



def page_document(*, staging: bool = False) -> str:
    # `total_count` is not selected: it is unreliable (pitfall 1); counting is `diamonds_by_query_count`'s job.
    return f"""
query DiamondsPage($token: String!, $query: DiamondQuery!, $offset: Int, $limit: Int, $order: DiamondOrder) {{
  as(token: $token) {{
    diamonds_by_query(query: $query, offset: $offset, limit: $limit, order: $order) {{
      items {{ {_item_fields(staging)} }}
    }}
  }}
}}
"""


def get_document(*, staging: bool = False) -> str:
    return f"""
query DiamondById($token: String!, $diamond_id: ID!) {{
  as(token: $token) {{ get_diamond_by_id(diamond_id: $diamond_id) {{ {_item_fields(staging)} }} }}
}}
"""


PAGE = page_document()
GET = get_document()

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
    """True when no whole dollar per carat lies in the partition's range and the feed's own bounds together."""
    low, high = dollar_per_carat_bounds(query)
    return low is not None and high is not None and high < low


def dollar_per_carat_bounds(query: FeedQuery) -> tuple[int | None, int | None]:
    """Inclusive whole-dollar bounds: the feed's `dollar_per_carat` narrowed by the partition's half-open range.

    The partition's upper end at the axis ceiling is no bound at all (the top partition is open-ended): the
    2-billion sentinel is our axis, not a price, and is never sent.
    """
    own = (query.filters or {}).get("dollar_per_carat") or {}
    lows = [int(v) for v in (own.get("from"), query.ppc_from) if v is not None]
    highs = [int(v) for v in (own.get("to"),) if v is not None]
    if query.ppc_to is not None and query.ppc_to < AXIS_MAX:
        highs.append(query.ppc_to - 1)
    return (max(lows) if lows else None), (min(highs) if highs else None)


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with a `Z`; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def diamond_query(query: FeedQuery) -> dict[str, Any]:
    """The `DiamondQuery` input for a FeedQuery: the feed's filters, then the request's own keys.

    The partition's price range (within the feed's `dollar_per_carat` bounds), the run's `updated` window and
    the looked-up `ids` replace only those keys; every other filter of the feed is sent as configured.
    Our ranges are half-open `[ppc_from, ppc_to)` in whole dollars; the feed's integer bounds are inclusive,
    so the upper bound sent is `ppc_to - 1`. Absent bounds are omitted rather than sent as null.
    """
    result: dict[str, Any] = {k: v for k, v in (query.filters or {}).items() if k != "dollar_per_carat"}
    low, high = dollar_per_carat_bounds(query)
    ppc: dict[str, int] = {}
    if low is not None:
        ppc["from"] = low
    if high is not None:
        ppc["to"] = high
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
