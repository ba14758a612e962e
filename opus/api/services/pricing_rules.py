"""Pricing-rule changes, each followed in the same transaction by a set-based repricing of active stones.

Validation is the domain's (`validate_rule`), so the API refuses exactly what the pricing engine would call
malformed. Repricing is one UPDATE in SQL that mirrors `PricingEngine` (see `reprice` in api_pricing.sql): no
stone is re-ingested, and rows whose outcome does not change are not written.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors

from opus.api.context import ApiContext
from opus.api.errors import ApiError
from opus.api.schemas.pricing import PricingRuleIn
from opus.db.queries import Queries
from opus.domain.models import PricingRule
from opus.domain.pricing import validate_rule
from opus.errors import ConflictError, NotFoundError

Q = Queries("api_pricing")
Row = dict[str, Any]
Conn = psycopg.Connection[Row]


def list_rules(ctx: ApiContext) -> list[Row]:
    with ctx.db.connection() as conn:
        return conn.execute(Q.list_rules).fetchall()


def get_rule(ctx: ApiContext, rule_id: int) -> Row:
    with ctx.db.connection() as conn:
        row = conn.execute(Q.get_rule, {"id": rule_id}).fetchone()
    if row is None:
        raise NotFoundError(f"pricing rule {rule_id} does not exist")
    return row


def _checked(rule: PricingRuleIn) -> dict[str, Any]:
    domain = PricingRule(
        id=0, priority=rule.priority, markup_ratio=rule.markup_ratio, name=rule.name, feed=rule.feed,
        shapes=frozenset(rule.shapes) if rule.shapes is not None else None,
        carat_min=rule.carat_min, carat_max=rule.carat_max, lab_grown=rule.lab_grown,
        feed_price_min=rule.feed_price_min, feed_price_max=rule.feed_price_max, rating=rule.rating,
        active=rule.active,
    )
    problems = validate_rule(domain)
    if problems:
        raise ApiError(422, "the pricing rule is not valid: " + "; ".join(problems), details=problems)
    return rule.model_dump()


def _changing(ctx: ApiContext, change: Any) -> tuple[Row | None, int]:
    """Run `change(conn, now)` then reprice, in one transaction; map constraint failures to API errors."""
    now = ctx.now()
    try:
        with ctx.db.transaction() as conn:
            conn.execute(Q.lock_rules)
            row = change(conn, now)
            repriced = conn.execute(Q.reprice, {"now": now}).rowcount
    except pg_errors.UniqueViolation:
        raise ConflictError("another pricing rule already has this priority") from None
    except (pg_errors.CheckViolation, pg_errors.NumericValueOutOfRange) as exc:
        # The rule itself passed validation, so it is the prices it produces that cannot be stored (e.g. a
        # markup so small that a price rounds to zero): the change is refused as a whole.
        raise ApiError(422, f"the rule would give prices that cannot be stored: {exc.diag.message_primary}",
                       code="unstorable_price") from None
    return row, max(repriced, 0)


def create_rule(ctx: ApiContext, rule: PricingRuleIn) -> tuple[Row, int]:
    values = _checked(rule)

    def insert(conn: Conn, now: Any) -> Row | None:
        return conn.execute(Q.insert_rule, {**values, "now": now}).fetchone()

    row, repriced = _changing(ctx, insert)
    assert row is not None
    return row, repriced


def replace_rule(ctx: ApiContext, rule_id: int, rule: PricingRuleIn) -> tuple[Row, int]:
    values = _checked(rule)

    def update(conn: Conn, now: Any) -> Row | None:
        row = conn.execute(Q.update_rule, {**values, "id": rule_id, "now": now}).fetchone()
        if row is None:
            raise NotFoundError(f"pricing rule {rule_id} does not exist")
        return row

    row, repriced = _changing(ctx, update)
    assert row is not None
    return row, repriced


def delete_rule(ctx: ApiContext, rule_id: int) -> int:
    def delete(conn: Conn, now: Any) -> Row | None:
        row = conn.execute(Q.delete_rule, {"id": rule_id}).fetchone()
        if row is None:
            raise NotFoundError(f"pricing rule {rule_id} does not exist")
        return row

    return _changing(ctx, delete)[1]
