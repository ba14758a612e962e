"""Claimed raw rows -> COPY lines of `diamonds_staging`: parse, map, price, hash. The CPU-bound part of
consolidation, with no I/O, so that it can run in worker processes (`opus.pipeline.preparers`) as well as in
the consolidating thread; both run this very function.

Pricing uses the rules the consolidator read with the claim, and the batch records their version; the
consolidator writes the lines only if the version is still current when it holds the rules lock again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Final

from opus.domain.mapping import MAPPING_VERSION, MappingError, map_nivoda_item
from opus.domain.models import PricingRule
from opus.domain.pricing import PricingEngine
from opus.pipeline.diamond_rows import BuiltFrom, to_staging_row
from opus.pipeline.payload_text import parse_payload


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """What preparing needs of one claimed raw row (the payload as the claim returned it, as text)."""

    supplier_stone_id: str
    payload: str
    payload_hash: str


@dataclass(frozen=True, slots=True)
class StagingTask:
    """Rows in claim order (ascending raw id), and the rules, with their version, to price them with."""

    rows: tuple[ClaimedRow, ...]
    feed: str
    run_id: str
    rules: tuple[PricingRule, ...]
    rules_version: int

    def split(self, parts: int) -> list[StagingTask]:
        """At most `parts` tasks over consecutive runs of the rows, in order."""
        size = -(-len(self.rows) // max(parts, 1))
        return [StagingTask(self.rows[i:i + size], self.feed, self.run_id, self.rules, self.rules_version)
                for i in range(0, len(self.rows), max(size, 1))]


@dataclass(frozen=True, slots=True)
class MappingFailure:
    supplier_stone_id: str
    payload: object  # the parsed record, as error_logs keeps it
    error: MappingError


@dataclass(slots=True)
class PreparedBatch:
    """COPY lines keyed as `diamonds` is (a stone twice in a batch: the later row wins), the failures, and how
    many stones no rule priced."""

    rules_version: int
    lines: dict[tuple[str, str], str] = field(default_factory=dict)
    failures: list[MappingFailure] = field(default_factory=list)
    unpriced: int = 0

    def absorb(self, later: PreparedBatch) -> None:
        """Add the results of rows claimed after this batch's (a later part of the same task)."""
        self.lines.update(later.lines)
        self.failures.extend(later.failures)
        self.unpriced += later.unpriced


def prepare_staging(task: StagingTask) -> PreparedBatch:
    """The COPY lines (STAGING_COLUMNS order, text format) of the task's rows that map, and the failures."""
    engine = _engine(task.rules)
    out = PreparedBatch(task.rules_version)
    for row in task.rows:
        item = parse_payload(row.payload)
        mapped = map_nivoda_item(item, task.feed)
        if isinstance(mapped, MappingError):
            out.failures.append(MappingFailure(row.supplier_stone_id, item, mapped))
            continue
        built = BuiltFrom(row.payload_hash, MAPPING_VERSION, task.rules_version)
        values, priced = to_staging_row(mapped, engine, task.run_id, built)
        out.lines[(mapped.feed, mapped.supplier_stone_id)] = copy_text_line(values)
        out.unpriced += not priced
    return out


@lru_cache(maxsize=4)
def _engine(rules: tuple[PricingRule, ...]) -> PricingEngine:
    # Built once per rule set and process: the rules change rarely, batches come by the hundred.
    return PricingEngine(rules)


# COPY's text format: backslash, tab, newline and carriage return are escaped; NULL is \N.
_COPY_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text_line(values: tuple[object, ...]) -> str:
    """One row in COPY's text format, as psycopg's `write_row` would send it for these types."""
    fields: list[str] = []
    for value in values:
        if value is None:
            fields.append("\\N")
        elif isinstance(value, bool):
            fields.append("t" if value else "f")
        elif isinstance(value, str):
            fields.append(value.translate(_COPY_ESCAPES))
        elif isinstance(value, int | Decimal):
            fields.append(str(value))
        else:
            raise TypeError(f"no COPY text form for {type(value).__name__}")
    return "\t".join(fields) + "\n"
