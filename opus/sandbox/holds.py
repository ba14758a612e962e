"""The hold book: who holds which stone until when, and which suppliers allow holds at all.

Kept apart from the inventory's indexes so the lifecycle rules read in one place. The inventory's
lock guards every call; nothing here locks on its own.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass, field

from opus.sandbox.generator import Stone

HOLD_DURATION_MS = 24 * 3600 * 1000


@dataclass
class HoldBook:
    stones: dict[str, Stone] = field(default_factory=dict)  # hold id -> stone
    until_ms: dict[str, int] = field(default_factory=dict)
    ours: set[str] = field(default_factory=set)  # holds placed through create_hold, not by other buyers
    _expiries: list[tuple[int, str]] = field(default_factory=list)  # a heap of (until, hold id)

    def __contains__(self, hold_id: str) -> bool:
        return hold_id in self.stones

    def __len__(self) -> int:
        return len(self.stones)

    def add(self, hold_id: str, stone: Stone, until_ms: int, ours: bool = False) -> None:
        self.stones[hold_id] = stone
        self.until_ms[hold_id] = until_ms
        if ours:
            self.ours.add(hold_id)
        heapq.heappush(self._expiries, (until_ms, hold_id))

    def pop(self, hold_id: str) -> Stone | None:
        self.until_ms.pop(hold_id, None)
        self.ours.discard(hold_id)
        return self.stones.pop(hold_id, None)

    def lapsed(self, now_ms: int) -> list[tuple[Stone, int]]:
        """Remove and return the holds whose `until` has passed, with the instant each lapsed."""
        out = []
        while self._expiries and self._expiries[0][0] <= now_ms:
            until, hold_id = heapq.heappop(self._expiries)
            if self.until_ms.get(hold_id) != until:
                continue  # cancelled, or converted into an order, before it lapsed
            stone = self.pop(hold_id)
            if stone is not None and stone.hold_id == hold_id:
                out.append((stone, until))
        return out

    def visible_id(self, hold_id: str | None) -> str | None:
        """The hold id a denied buyer may see: its own, never another buyer's."""
        return hold_id if hold_id in self.ours else None


def _fraction(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def supplier_denies_holds(seed: int, supplier_id: str, share: float) -> bool:
    """Whether this supplier is among the `share` that allow no holds; fixed per seed, so a supplier that
    denies at 10 % still denies at 20 %."""
    return share > 0 and _fraction(f"no-holds:{seed}:{supplier_id}") < share


def other_buyers_until(now_ms: int, hold_id: str) -> int:
    """When a hold found in the generated inventory lapses: within the next 24 h, fixed by its id."""
    return now_ms + int(_fraction(f"until:{hold_id}") * HOLD_DURATION_MS)
