"""Turning a mapped Diamond into a row of `diamonds`: pricing, content hash, column order for COPY."""

from __future__ import annotations

import hashlib
from decimal import Decimal

from opus.db.pool import Connection
from opus.db.queries import Queries
from opus.domain.models import Diamond, PricingRule
from opus.domain.pricing import PricingEngine

SQL = Queries("consolidate")


def load_pricing_engine(conn: Connection) -> PricingEngine:
    """The active pricing rules as an engine (read per batch, so a rule change applies from the next one)."""
    rules = [
        PricingRule(
            id=r["id"], priority=r["priority"], markup_ratio=r["markup_ratio"], name=r["name"], feed=r["feed"],
            shapes=frozenset(r["shapes"]) if r["shapes"] else None, carat_min=r["carat_min"],
            carat_max=r["carat_max"], lab_grown=r["lab_grown"], feed_price_min=r["feed_price_min"],
            feed_price_max=r["feed_price_max"], rating=r["rating"], active=r["active"],
        )
        for r in conn.execute(SQL.active_rules)
    ]
    return PricingEngine(rules)


def to_staging_row(d: Diamond, engine: PricingEngine, run_id: str) -> tuple[tuple[object, ...], bool]:
    """The COPY row for `diamonds_staging` (column order of consolidate.sql) and whether a rule priced it."""
    priced = engine.price(d)
    price: Decimal | None = priced.price if priced else None
    markup = priced.markup_ratio if priced else None
    rule_id = priced.pricing_rule_id if priced else None
    rating = priced.rating if priced else None
    row = (
        d.feed, d.supplier_stone_id, d.offer_id, d.shape, d.carats, d.color, d.clarity, d.cut, d.polish,
        d.symmetry, d.fluorescence, d.fancy_color, d.fancy_intensity, d.fancy_overtone, d.lab,
        d.certificate_number, d.lab_grown, d.length_mm, d.width_mm, d.depth_mm, d.depth_pct, d.table_pct,
        d.eye_clean, d.availability.value, d.hold_id, d.image_url, d.video_url, d.certificate_url,
        d.supplier_id, d.supplier_name, d.feed_price, price, markup, rule_id, rating,
    )
    return (*row, content_hash(d, row[-4:]), run_id), priced is not None


def content_hash(d: Diamond, pricing: tuple[object, ...]) -> str:
    """A digest of everything a row holds, so an unchanged stone is not rewritten."""
    return hashlib.sha256(repr((d, pricing)).encode()).hexdigest()
