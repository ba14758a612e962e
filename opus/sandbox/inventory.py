"""The sandbox's in-memory inventory: indexes, searches, trading and the admin operations.

Stones are kept in (createdAt, id) order and in two price indexes (whole dollars per carat, whole
dollars), so a price-partitioned search bisects to its slice instead of scanning every stone. Full
search results are cached per (query, order) until the inventory changes, so paging through a range
costs a list slice per page. One re-entrant lock makes the object safe to share between the server
thread and a test thread.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opus.sandbox.config import Behaviour, LiveBehaviour
from opus.sandbox.faults import Faults
from opus.sandbox.filters import SandboxError, compile_query, sort_key
from opus.sandbox.generator import Stone, Supplier, generate, make_stones
from opus.sandbox.holds import HOLD_DURATION_MS, HoldBook, other_buyers_until, supplier_denies_holds
from opus.sandbox.noise import reported_count, stone_key, undercount_rate
from opus.sandbox.realistic import reshape

__all__ = ["HOLD_DURATION_MS", "HoldResult", "Inventory"]
AVAILABILITIES = ("AVAILABLE", "ON HOLD", "SOLD", "MEMO")
_CACHE_SIZE = 64


@dataclass(frozen=True)
class HoldResult:
    id: str | None
    denied: bool
    until_ms: int | None


class Inventory:
    def __init__(self, diamonds: int = 1000, seed: int = 7, *, clock: Callable[[], float] = time.time,
                 realistic: bool = False, behaviour: Behaviour | None = None) -> None:
        if diamonds < 0:
            raise ValueError("diamonds must be >= 0")
        self.seed = seed
        self.clock = clock
        self.realistic = realistic
        self.lock = threading.RLock()
        self.faults = Faults(seed)
        self.behaviour = LiveBehaviour(behaviour or Behaviour())
        self.suppliers: list[Supplier]
        self.suppliers, stones = generate(diamonds, seed)
        # the realistic reshaping and stones added at run time each have their own stream, so neither
        # disturbs the seeded stones of the plain inventory
        self._realistic_rng = random.Random(f"opus-sandbox-realistic:{seed}")
        if realistic:
            reshape(stones, self._realistic_rng)
        self._add_rng = random.Random(f"opus-sandbox-add:{seed}")
        self._next_serial = diamonds
        self._by_id = {s.stone_id: s for s in stones}
        self._by_offer = {s.offer_id: s for s in stones}
        self._holds = HoldBook()
        now = self.now_ms()
        for s in stones:
            if s.hold_id:
                self._holds.add(s.hold_id, s, other_buyers_until(now, s.hold_id))
        self.orders: dict[str, list[str]] = {}
        self.version = 0
        self._cache: OrderedDict[tuple[Any, ...], list[Stone]] = OrderedDict()
        self._counts: dict[tuple[str, float], int] = {}
        self._noise_keys: dict[str, int] = {}
        self._reindex()

    # ---- indexes -------------------------------------------------------------------------------
    def _reindex(self) -> None:
        """Rebuild the order and price indexes (after stones are added, removed or repriced)."""
        ordered = sorted(self._by_id.values(), key=lambda s: (s.created_ms, s.stone_id))
        self._ordered = ordered
        # sorting positions by a precomputed key list is several times cheaper than key=lambda on stones;
        # sorted() is stable, so stones sharing a key stay in createdAt order
        ppc = [s.price_cents // s.ct100 for s in ordered]
        by_ppc = sorted(range(len(ordered)), key=ppc.__getitem__)
        self._ppc_keys = [ppc[i] for i in by_ppc]
        self._ppc_stones = [ordered[i] for i in by_ppc]
        dollars = [s.price_cents // 100 for s in ordered]
        by_dollars = sorted(range(len(ordered)), key=dollars.__getitem__)
        self._dollar_keys = [dollars[i] for i in by_dollars]
        self._dollar_stones = [ordered[i] for i in by_dollars]
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()
        self._counts.clear()

    def _lapse_holds(self) -> None:
        """Return lapsed holds to AVAILABLE (when holds expire), before anything reads or trades."""
        if not self.behaviour.current.hold_expiry:
            return
        with self.lock:
            lapsed = self._holds.lapsed(self.now_ms())
            for stone, until_ms in lapsed:
                stone.availability, stone.hold_id = "AVAILABLE", None
                stone.updated_ms = max(until_ms, stone.created_ms)
            if lapsed:
                self._changed()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _touch(self, stone: Stone) -> None:
        # updated never precedes createdAt, even under a test clock set in the past
        stone.updated_ms = max(self.now_ms(), stone.created_ms)

    # ---- reads ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_id)

    def stones(self) -> list[Stone]:
        """Every live stone in (createdAt, id) order."""
        with self.lock:
            self._lapse_holds()
            return list(self._ordered)

    def get(self, stone_id: str) -> Stone | None:
        self._lapse_holds()
        return self._by_id.get(stone_id)

    def by_offer(self, offer_id: str) -> Stone | None:
        return self._by_offer.get(offer_id)

    def supplier_of(self, stone: Stone) -> Supplier:
        return self.suppliers[stone.supplier]

    def search(self, query: Mapping[str, Any], order_type: str = "createdAt", descending: bool = False
               ) -> list[Stone]:
        """Every stone matching `query`, in order. The returned list is shared: do not mutate it."""
        key = (json.dumps(query, sort_keys=True, default=str), order_type, descending)
        with self.lock:
            self._lapse_holds()
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            compiled = compile_query(query)
            candidates, in_created_order = self._candidates(compiled.ids, compiled.ppc, compiled.dollars)
            found = [s for s in candidates if compiled.matches(s)]
            if order_type in ("createdAt", "none", "insert", "popular") and not descending:
                if not in_created_order:
                    found.sort(key=lambda s: (s.created_ms, s.stone_id))
            else:
                found.sort(key=sort_key(order_type), reverse=descending)
            self._cache[key] = found
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return found

    def _candidates(self, ids: frozenset[str] | None, ppc: tuple[int | None, int | None] | None,
                    dollars: tuple[int | None, int | None] | None) -> tuple[Sequence[Stone], bool]:
        """The narrowest superset an index gives, and whether it is already in createdAt order."""
        if ids is not None:
            return [s for i in ids if (s := self._by_id.get(i)) is not None], False
        if ppc is not None:
            return _slice(self._ppc_keys, self._ppc_stones, ppc), False
        if dollars is not None:
            return _slice(self._dollar_keys, self._dollar_stones, dollars), False
        return self._ordered, True

    def count(self, query: Mapping[str, Any]) -> int:
        """The exact number of matches."""
        return len(self.search(query))

    def reported_count(self, query: Mapping[str, Any]) -> int:
        """What diamonds_by_query_count answers: the exact count, less the stones count noise leaves out."""
        rate = undercount_rate(query, self.behaviour.current.count_noise, self.faults.settings.rows_past_count)
        with self.lock:
            found = self.search(query)
            if rate <= 0:
                return len(found)
            key = (json.dumps(query, sort_keys=True, default=str), rate)
            if key not in self._counts:
                keys = (self._noise_key(s.stone_id) for s in found)
                self._counts[key] = reported_count(keys, query, self.seed, rate)
            return self._counts[key]

    def _noise_key(self, stone_id: str) -> int:
        key = self._noise_keys.get(stone_id)
        if key is None:
            key = self._noise_keys[stone_id] = stone_key(stone_id)
        return key

    def page(self, query: Mapping[str, Any], offset: int, limit: int, order_type: str = "createdAt",
             descending: bool = False) -> tuple[list[Stone], int]:
        """One page and the exact number of matches."""
        found = self.search(query, order_type, descending)
        return found[offset:offset + limit], len(found)

    # ---- trading -------------------------------------------------------------------------------
    def create_hold(self, stone_id: str) -> HoldResult:
        """A hold for 24 h; denied when the stone is not available (held by anyone, on memo, sold) or
        its supplier allows no holds. A denial shows the buyer's own hold id, never another buyer's."""
        with self.lock:
            self._lapse_holds()
            stone = self._by_id.get(stone_id)
            if stone is None:
                raise SandboxError(f"diamond not found: {stone_id}", "NOT_FOUND")
            if stone.availability != "AVAILABLE":
                return HoldResult(self._holds.visible_id(stone.hold_id), True, None)
            if self.supplier_denies_holds(stone):
                return HoldResult(None, True, None)
            hold_id = str(uuid.uuid4())
            until_ms = self.now_ms() + HOLD_DURATION_MS
            stone.availability, stone.hold_id = "ON HOLD", hold_id
            self._holds.add(hold_id, stone, until_ms, ours=True)
            self._touch(stone)
            self._changed()
            return HoldResult(hold_id, False, until_ms)

    def supplier_denies_holds(self, stone: Stone) -> bool:
        share = self.behaviour.current.no_hold_suppliers
        return supplier_denies_holds(self.seed, self.suppliers[stone.supplier].id, share)

    def cancel_hold(self, hold_id: str) -> str:
        with self.lock:
            self._lapse_holds()
            stone = self._holds.pop(hold_id)
            if stone is None:
                raise SandboxError(f"hold not found: {hold_id}", "NOT_FOUND")
            if stone.hold_id == hold_id and stone.availability == "ON HOLD":
                stone.availability, stone.hold_id = "AVAILABLE", None
                self._touch(stone)
                self._changed()
            return hold_id

    def create_order(self, offer_ids: Sequence[str]) -> str:
        """All or nothing: every offer must exist, be unsold and appear once."""
        with self.lock:
            self._lapse_holds()
            if not offer_ids:
                raise SandboxError("an order needs at least one item")
            if len(set(offer_ids)) != len(offer_ids):
                raise SandboxError("an offerId appears more than once in the order")
            stones = []
            for offer_id in offer_ids:
                stone = self._by_offer.get(offer_id)
                if stone is None:
                    raise SandboxError(f"unknown offerId: {offer_id}", "NOT_FOUND")
                if stone.availability == "SOLD":
                    raise SandboxError(f"offer is not available: {offer_id} is sold", "CONFLICT")
                stones.append(stone)
            order_id = str(uuid.uuid4())
            for stone in stones:
                self._set_availability(stone, "SOLD")
            self.orders[order_id] = list(offer_ids)
            self._changed()
            return order_id

    def _set_availability(self, stone: Stone, availability: str) -> None:
        if stone.hold_id:
            self._holds.pop(stone.hold_id)
            stone.hold_id = None
        if availability == "ON HOLD":  # another buyer's hold, lapsing like one
            stone.hold_id = str(uuid.uuid4())
            self._holds.add(stone.hold_id, stone, self.now_ms() + HOLD_DURATION_MS)
        stone.availability = availability
        self._touch(stone)

    # ---- admin: change the inventory while a client is reading it -------------------------------
    def _pick(self, count: int, seed: int, ids: Sequence[str] | None,
              eligible: Callable[[Stone], bool] = lambda s: True) -> list[Stone]:
        if ids is not None:
            return [s for i in dict.fromkeys(ids) if (s := self._by_id.get(i)) is not None]
        pool = [s for s in self._ordered if eligible(s)]
        return random.Random(seed).sample(pool, max(0, min(count, len(pool))))

    def reprice(self, fraction: float, factor: float, seed: int = 0, ids: Sequence[str] | None = None
                ) -> list[str]:
        """Multiply the price of `fraction` of the stones (chosen by `seed`) by `factor`."""
        if not 0.0 <= fraction <= 1.0 or factor <= 0:
            raise ValueError("fraction must be in [0, 1] and factor > 0")
        with self.lock:
            chosen = self._pick(round(fraction * len(self._ordered)), seed, ids)
            for s in chosen:
                s.price_cents = max(1, round(s.price_cents * factor))
                s.diamond_price_cents = max(1, round(s.diamond_price_cents * factor))
                self._touch(s)
            self._reindex()
            return [s.stone_id for s in chosen]

    def set_availability(self, count: int, availability: str, seed: int = 0,
                         ids: Sequence[str] | None = None) -> list[str]:
        """Move `count` stones (chosen by `seed` among those not already there) to `availability`."""
        if availability not in AVAILABILITIES:
            raise ValueError(f"availability must be one of {', '.join(AVAILABILITIES)}")
        with self.lock:
            chosen = self._pick(count, seed, ids, lambda s: s.availability != availability)
            for s in chosen:
                self._set_availability(s, availability)
            self._changed()
            return [s.stone_id for s in chosen]

    def add(self, count: int) -> list[Stone]:
        """New listings, created and updated now."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self.lock:
            now = self.now_ms()
            new = make_stones(self._add_rng, self._next_serial, [(now, now)] * count, len(self.suppliers))
            if self.realistic:
                reshape(new, self._realistic_rng)
            self._next_serial += count
            for s in new:
                self._by_id[s.stone_id] = s
                self._by_offer[s.offer_id] = s
                if s.hold_id:
                    self._holds.add(s.hold_id, s, other_buyers_until(now, s.hold_id))
            self._reindex()
            return new

    def remove(self, count: int, seed: int = 0, ids: Sequence[str] | None = None) -> list[str]:
        """Delist stones: they vanish from every query, as a delisted stone does in production."""
        with self.lock:
            chosen = self._pick(count, seed, ids)
            for s in chosen:
                del self._by_id[s.stone_id]
                del self._by_offer[s.offer_id]
                if s.hold_id:
                    self._holds.pop(s.hold_id)
            self._reindex()
            return [s.stone_id for s in chosen]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            self._lapse_holds()
            stones = self._ordered
            return {
                "count": len(stones),
                "labgrown": sum(s.labgrown for s in stones),
                "natural": sum(not s.labgrown for s in stones),
                "availability": dict(Counter(s.availability for s in stones)),
                "dollar_per_carat_min": self._ppc_keys[0] if stones else None,
                "dollar_per_carat_max": self._ppc_keys[-1] if stones else None,
                "updated_max": _iso(max((s.updated_ms for s in stones), default=None)),
                "holds": len(self._holds),
                "orders": len(self.orders),
                "suppliers": len(self.suppliers),
                "seed": self.seed,
                "version": self.version,
            }


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _slice(keys: list[int], stones: list[Stone], bounds: tuple[int | None, int | None]) -> list[Stone]:
    lo, hi = bounds
    start = 0 if lo is None else bisect_left(keys, lo)
    end = len(keys) if hi is None else bisect_right(keys, hi)
    return stones[start:end]
