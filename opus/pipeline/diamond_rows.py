"""Turning a mapped Diamond into a row of `diamonds`: pricing, content hash, what it was built from, the column
order for COPY."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from opus.db.queries import Queries
from opus.domain.models import Diamond, PricingRule
from opus.domain.pricing import PricingEngine

if TYPE_CHECKING:  # consolidation's worker processes import this module without the database driver
    from opus.db.pool import Connection

SQL = Queries("consolidate")

# The columns the consolidator writes, in the order of `copy_staging` in consolidate.sql (a test holds the SQL to
# this list): the mapped stone's fields, then what pricing adds, then bookkeeping, then what the row was built from.
MAPPED_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(Diamond))
PRICING_COLUMNS: Final = ("price", "markup_ratio", "pricing_rule_id", "rating")
BUILT_FROM_COLUMNS: Final = ("payload_hash", "mapping_version", "rules_version")
STAGING_COLUMNS: Final[tuple[str, ...]] = (
    *MAPPED_COLUMNS, *PRICING_COLUMNS, "content_hash", "run_id", *BUILT_FROM_COLUMNS,
)


@dataclass(frozen=True, slots=True)
class BuiltFrom:
    """What a diamonds row was built from. A raw row whose three match its diamond's is not rebuilt."""

    payload_hash: str
    mapping_version: int
    rules_version: int


def load_pricing_rules(conn: Connection) -> tuple[PricingRule, ...]:
    """The active pricing rules (read per batch, so a rule change applies from the next one)."""
    return tuple(
        PricingRule(
            id=r["id"], priority=r["priority"], markup_ratio=r["markup_ratio"], name=r["name"], feed=r["feed"],
            shapes=frozenset(r["shapes"]) if r["shapes"] else None, carat_min=r["carat_min"],
            carat_max=r["carat_max"], lab_grown=r["lab_grown"], feed_price_min=r["feed_price_min"],
            feed_price_max=r["feed_price_max"], rating=r["rating"], active=r["active"],
        )
        for r in conn.execute(SQL.active_rules)
    )


def load_pricing_engine(conn: Connection) -> PricingEngine:
    """The active pricing rules as an engine."""
    return PricingEngine(load_pricing_rules(conn))


def to_staging_row(d: Diamond, engine: PricingEngine, run_id: str,
                   built_from: BuiltFrom | None = None) -> tuple[tuple[object, ...], bool]:
    """The COPY row for `diamonds_staging` (STAGING_COLUMNS order) and whether a rule priced it. Without
    `built_from` the row records nothing it was built from, and the next full run rebuilds it."""
    priced = engine.price(d)
    values: dict[str, object] = {name: getattr(d, name) for name in MAPPED_COLUMNS}
    values["availability"] = d.availability.value
    values["price"] = priced.price if priced else None
    values["markup_ratio"] = priced.markup_ratio if priced else None
    values["pricing_rule_id"] = priced.pricing_rule_id if priced else None
    values["rating"] = priced.rating if priced else None
    values["content_hash"] = content_hash(d)
    values["run_id"] = run_id
    values["payload_hash"] = built_from.payload_hash if built_from else None
    values["mapping_version"] = built_from.mapping_version if built_from else None
    values["rules_version"] = built_from.rules_version if built_from else None
    return tuple(values[name] for name in STAGING_COLUMNS), priced is not None


def rules_version(conn: Connection) -> int:
    """The pricing rules' version (bumped by every change to them); read under `lock_rules` with the rules."""
    row = conn.execute(SQL.rules_version).fetchone()
    assert row is not None, "a sequence always has a value"
    return int(row["version"])


def content_hash(d: Diamond) -> str:
    """A digest of the mapped stone. Pricing is not in it: the upsert compares the price fields by value, because
    repricing after a rule change writes them set-based, where no hash can follow."""
    return hashlib.sha256(repr(d).encode()).hexdigest()
