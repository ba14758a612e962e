"""The SDL in schema.graphql, executed by graphql-core, with resolvers over an `Inventory`.

Parsing and validation are graphql-core's own, so an unknown field, argument or enum value fails the
way a real GraphQL server fails: errors[] and no data. Valid documents are cached by their text because
a pipeline sends the same query thousands of times with different variables.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    default_field_resolver,
    execute_sync,
    parse,
    specified_rules,
    validate,
)

from opus.sandbox.auth import TokenStore
from opus.sandbox.filters import SandboxError
from opus.sandbox.inventory import Inventory
from opus.sandbox.render import render_item
from opus.sandbox.validation import StagingRejectedFields, install_scalars

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
MAX_LIMIT = 50
_DOCUMENT_CACHE_SIZE = 256


@dataclass(frozen=True)
class RequestContext:
    inventory: Inventory
    tokens: TokenStore
    bearer: str | None = None


class _Session:
    """What `as(token:)` resolves to once the token is good; its fields need no further check."""


_SESSION = _Session()
_AUTHENTICATE: dict[str, Any] = {}
Resolver = Callable[..., Any]


def _reported(fn: Resolver) -> Resolver:
    """SandboxError becomes a GraphQL error carrying its code; the session check runs first."""
    @functools.wraps(fn)
    def wrapper(parent: Any, info: GraphQLResolveInfo[RequestContext], **args: Any) -> Any:
        ctx = info.context
        if not isinstance(parent, _Session):  # a root field: the token must come as a Bearer header
            ctx.tokens.check(ctx.bearer)
        try:
            return fn(ctx.inventory, **args)
        except SandboxError as e:
            raise GraphQLError(str(e), extensions={"code": e.code}) from e
    return wrapper


def _username_and_password(_: Any, info: GraphQLResolveInfo[RequestContext], username: str, password: str
                           ) -> dict[str, Any]:
    token, expires_ms = info.context.tokens.issue(username, password)
    return {"token": token, "expires": expires_ms}


def _as(_: Any, info: GraphQLResolveInfo[RequestContext], token: str) -> _Session:
    info.context.tokens.check(token)
    return _SESSION


def _order(order: dict[str, Any] | None) -> tuple[str, bool]:
    order = order or {}
    return order.get("type") or "createdAt", order.get("direction") == "DESC"


def diamonds_by_query(inv: Inventory, query: dict[str, Any], offset: int | None = None,
                      limit: int | None = None, order: dict[str, Any] | None = None) -> dict[str, Any]:
    offset = 0 if offset is None else offset
    limit = MAX_LIMIT if limit is None else limit
    if limit > MAX_LIMIT:
        raise SandboxError(f"limit must be at most {MAX_LIMIT}, got {limit}")
    if limit < 0 or offset < 0:
        raise SandboxError("offset and limit must not be negative")
    order_type, descending = _order(order)
    with inv.lock:
        stones, total = inv.page(query, offset, limit, order_type, descending)
        stones = stones[:inv.faults.page_length(len(stones), offset + len(stones) < total)]
        items = [render_item(s, inv.supplier_of(s)) for s in stones]
    # production's total_count is the rows left after the offset, not the size of the range
    return {"items": items, "total_count": max(0, total - offset)}


def diamonds_by_query_count(inv: Inventory, query: dict[str, Any], order: dict[str, Any] | None = None) -> int:
    return inv.reported_count(query)  # `order` is accepted and ignored, as production ignores it


def get_diamond_by_id(inv: Inventory, diamond_id: str) -> dict[str, Any] | None:
    with inv.lock:
        stone = inv.get(diamond_id)
        return None if stone is None else render_item(stone, inv.supplier_of(stone))


def create_hold(inv: Inventory, ProductId: str, ProductType: str | None = None) -> dict[str, Any]:
    hold = inv.create_hold(ProductId)
    until = None if hold.until_ms is None else \
        datetime.fromtimestamp(hold.until_ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {"id": hold.id, "denied": hold.denied, "until": until}


def cancel_hold(inv: Inventory, hold_id: str) -> dict[str, Any]:
    return {"id": inv.cancel_hold(hold_id)}


def create_order(inv: Inventory, items: list[dict[str, Any]]) -> str:
    return inv.create_order([str(item["offerId"]) for item in items])


QUERY_FIELDS: dict[str, Resolver] = {
    "diamonds_by_query": diamonds_by_query,
    "diamonds_by_query_count": diamonds_by_query_count,
    "get_diamond_by_id": get_diamond_by_id,
}
MUTATION_FIELDS: dict[str, Resolver] = {
    "create_hold": create_hold,
    "cancel_hold": cancel_hold,
    "create_order": create_order,
}


def build_sandbox_schema() -> GraphQLSchema:
    schema = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))
    install_scalars(schema)

    def obj(name: str) -> GraphQLObjectType:
        t = schema.get_type(name)
        assert isinstance(t, GraphQLObjectType)
        return t

    obj("Query").fields["authenticate"].resolve = lambda *_: _AUTHENTICATE
    obj("Authenticate").fields["username_and_password"].resolve = _username_and_password
    for root, scoped, fields in (("Query", "AuthenticatedQuery", QUERY_FIELDS),
                                 ("Mutation", "AuthenticatedMutation", MUTATION_FIELDS)):
        obj(root).fields["as"].resolve = _as
        for name, fn in fields.items():
            obj(root).fields[name].resolve = obj(scoped).fields[name].resolve = _reported(fn)
    return schema


class GraphQLExecutor:
    def __init__(self, schema: GraphQLSchema | None = None) -> None:
        self.schema = schema or build_sandbox_schema()
        self._lock = threading.Lock()
        self._documents: OrderedDict[tuple[bool, str], DocumentNode | list[dict[str, Any]]] = OrderedDict()

    def _document(self, source: str, staging: bool) -> DocumentNode | list[dict[str, Any]]:
        """The parsed, validated document, or the formatted errors that rejected it."""
        key = (staging, source)
        with self._lock:
            cached = self._documents.get(key)
        if cached is not None:
            return cached
        try:
            document: DocumentNode | list[dict[str, Any]] = parse(source)
        except GraphQLError as e:
            document = [_formatted(e, "GRAPHQL_PARSE_FAILED")]
        if isinstance(document, DocumentNode):
            rules = (*specified_rules, StagingRejectedFields) if staging else None
            errors = validate(self.schema, document, rules)
            if errors:
                document = [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in errors]
        with self._lock:
            self._documents[key] = document
            if len(self._documents) > _DOCUMENT_CACHE_SIZE:
                self._documents.popitem(last=False)
        return document

    def execute(self, source: str, variables: dict[str, Any] | None, operation_name: str | None,
                context: RequestContext, staging: bool = False) -> dict[str, Any]:
        """The GraphQL response body: {"data": ...} and, when anything failed, "errors": [...].
        `staging` rejects, at validation, the fields staging rejects."""
        document = self._document(source, staging)
        if not isinstance(document, DocumentNode):
            return {"errors": document}
        result = execute_sync(self.schema, document, context_value=context, variable_values=variables,
                              operation_name=operation_name, field_resolver=_plain_field)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [_formatted(e, "BAD_USER_INPUT" if e.path is None else "INTERNAL_SERVER_ERROR")
                              for e in result.errors]
        return body


def _plain_field(source: Any, info: GraphQLResolveInfo[RequestContext], **args: Any) -> Any:
    # rendered items are plain dicts: skip the default resolver's Mapping ABC check on ~5,000 fields a page
    if type(source) is dict:
        return source.get(info.field_name)
    return default_field_resolver(source, info, **args)


def _formatted(error: GraphQLError, default_code: str) -> dict[str, Any]:
    out = dict(error.formatted)
    out["extensions"] = {"code": default_code, **(error.extensions or {})}
    return out
