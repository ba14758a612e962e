"""The sandbox inventory: determinism, realism, filters, paging, trading and admin changes."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import UTC, datetime

import pytest

from opus.sandbox.filters import SandboxError
from opus.sandbox.generator import EPOCH_END_MS, EPOCH_START_MS, Stone, generate
from opus.sandbox.inventory import HOLD_DURATION_MS, Inventory
from opus.sandbox.render import render_item

NOW_S = 1_800_000_000.0  # 2027-01-15, after every generated timestamp


class FakeClock:
    def __init__(self, now: float = NOW_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def stones() -> list[Stone]:
    return generate(6000, seed=11)[1]


@pytest.fixture
def inv() -> Inventory:
    return Inventory(3000, seed=5, clock=FakeClock())


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def state(stone: Stone) -> tuple[str, str | None]:
    """Read through a call, so the type checker does not carry narrowing across mutations."""
    return stone.availability, stone.hold_id


def ids(found: list[Stone]) -> list[str]:
    return [s.stone_id for s in found]


# ---- determinism ---------------------------------------------------------------------------------

def test_same_seed_gives_identical_inventory() -> None:
    assert generate(800, seed=3) == generate(800, seed=3)


def test_different_seed_gives_different_inventory() -> None:
    a, b = generate(800, seed=3)[1], generate(800, seed=4)[1]
    assert {s.stone_id for s in a}.isdisjoint({s.stone_id for s in b})
    assert [s.price_cents for s in a] != [s.price_cents for s in b]


def test_inventory_does_not_depend_on_the_wall_clock() -> None:
    early = Inventory(500, seed=9, clock=FakeClock(0.0)).stones()
    late = Inventory(500, seed=9, clock=FakeClock(4_000_000_000.0)).stones()
    assert early == late
    assert all(EPOCH_START_MS <= s.created_ms <= s.updated_ms <= EPOCH_END_MS for s in early)


# ---- realism -------------------------------------------------------------------------------------

def test_distributions_are_plausible(stones: list[Stone]) -> None:
    shapes = Counter(s.shape for s in stones)
    assert len(shapes) >= 10
    assert shapes.most_common(1)[0][0] == "ROUND"
    assert 0.60 <= sum(s.labgrown for s in stones) / len(stones) <= 0.72
    assert all(30 <= s.ct100 <= 1000 for s in stones)
    assert statistics.median(s.carats for s in stones) < 1.2  # skewed toward small stones
    assert all(300_00 <= s.price_cents <= 250_000_00 for s in stones)
    assert min(s.price_cents for s in stones) < 400_00
    assert max(s.price_cents for s in stones) > 100_000_00
    assert len({s.supplier for s in stones}) >= 35
    assert {s.lab for s in stones} == {"GIA", "IGI", "HRD", "GCAL"}
    availability = Counter(s.availability for s in stones)
    assert availability["AVAILABLE"] > 0.85 * len(stones)
    assert availability["ON HOLD"]
    assert availability["MEMO"]
    assert all(s.hold_id for s in stones if s.availability == "ON HOLD")


def test_price_per_carat_rises_with_size_quality_and_nature(stones: list[Stone]) -> None:
    def median_ppc(pred: object) -> float:
        return statistics.median(s.ppc_floor for s in stones if pred(s))  # type: ignore[operator]

    natural_small = median_ppc(lambda s: not s.labgrown and s.ct100 < 50)
    natural_big = median_ppc(lambda s: not s.labgrown and s.ct100 >= 200)
    assert natural_big > 2 * natural_small
    lab = median_ppc(lambda s: s.labgrown and 90 <= s.ct100 <= 110)
    natural = median_ppc(lambda s: not s.labgrown and 90 <= s.ct100 <= 110)
    assert lab < 0.3 * natural
    top = median_ppc(lambda s: not s.labgrown and s.color in "DEF" and s.clarity in ("FL", "IF", "VVS1"))
    low = median_ppc(lambda s: not s.labgrown and s.color in "IJK" and s.clarity in ("SI2", "I1", "I2"))
    assert top > 1.5 * low


def test_ids_are_distinct_and_offer_ids_differ_from_stone_ids(stones: list[Stone]) -> None:
    stone_ids, offer_ids = {s.stone_id for s in stones}, {s.offer_id for s in stones}
    assert len(stone_ids) == len(offer_ids) == len(stones)
    assert stone_ids.isdisjoint(offer_ids)


def test_documented_messiness_is_present(stones: list[Stone]) -> None:
    inv = Inventory(0, seed=11)
    items = [render_item(s, inv.suppliers[s.supplier]) for s in stones]
    diamonds = [i["diamond"] for i in items]
    certs = [d["certificate"] for d in diamonds]
    eye = Counter(repr(d["eyeClean"]) for d in diamonds)
    assert {"'100%'", "'Yes'", "'No'", "'E0'", "True", "False", "None"} <= set(eye)
    assert any(c["color"] == "Fancy" and c["f_color"] is None for c in certs)
    assert any(c["color"] == "Fancy" and c["f_color"] and c["f_intensity"] for c in certs)
    assert {"NON", "FNT", "Faint", "MED", "Medium", "STG", "VST", "None"} <= {c["floInt"] for c in certs}
    assert any(c["labgrown"] is None and c["labgrown_type"] in ("CVD", "HPHT") for c in certs)
    assert all(c["labgrown"] is False and c["labgrown_type"] is None
               for s, c in zip(stones, certs, strict=True) if not s.labgrown)
    assert any(d["image"] is None and d["certificate"]["image"] for d in diamonds)
    assert any(d["video"] is None and d["certificate"]["v360"]["url"] for d in diamonds if d["certificate"]["v360"])
    assert any(d["video"] is None and d["v360"] is None and d["certificate"]["v360"] is None
               and d["supplier_video_link"] for d in diamonds)
    assert all(c["certNumber"] and c["pdfUrl"].endswith(".pdf") for c in certs)
    assert all(isinstance(i["price"], int) and i["id"] != i["diamond"]["id"] for i in items)


# ---- filters -------------------------------------------------------------------------------------

def test_dollar_per_carat_partitions_cover_every_stone_exactly_once(inv: Inventory) -> None:
    bounds = [0, 150, 400, 401, 900, 2000, 5000, 12_000, 10**7]
    seen: list[str] = []
    for a, b in itertools.pairwise(bounds):
        found = inv.search({"dollar_per_carat": {"from": a, "to": b - 1}})
        assert all(a <= s.price_cents // s.ct100 <= b - 1 for s in found)
        seen += ids(found)
    assert len(seen) == len(set(seen)) == len(inv)


def test_dollar_per_carat_is_inclusive_on_whole_dollar_floors(inv: Inventory) -> None:
    stone = inv.stones()[123]
    floor = stone.price_cents * 100 // (stone.ct100 * 100)
    assert stone.stone_id in ids(inv.search({"dollar_per_carat": {"from": floor, "to": floor}}))
    assert stone.stone_id not in ids(inv.search({"dollar_per_carat": {"from": floor + 1}}))
    assert stone.stone_id not in ids(inv.search({"dollar_per_carat": {"to": floor - 1}}))
    brute = [s.stone_id for s in inv.stones() if s.price_cents // s.ct100 >= 700]
    assert ids(inv.search({"dollar_per_carat": {"from": 700, "to": None}})) == brute


def test_dollar_value_matches_brute_force(inv: Inventory) -> None:
    expected = [s.stone_id for s in inv.stones() if 1000 <= s.price_cents // 100 <= 4999]
    assert ids(inv.search({"dollar_value": {"from": 1000, "to": 4999}})) == expected
    assert expected


def test_updated_window_is_inclusive(inv: Inventory) -> None:
    pivot = inv.stones()[50].updated_ms
    lo, hi = pivot - 30 * 86_400_000, pivot
    expected = [s.stone_id for s in inv.stones() if lo <= s.updated_ms <= hi]
    assert ids(inv.search({"updated": {"from": iso(lo), "to": iso(hi)}})) == expected
    assert inv.stones()[50].stone_id in expected


def test_shapes_labgrown_sizes_and_grades_filter(inv: Inventory) -> None:
    q = {"shapes": ["oval", "PEAR"], "labgrown": False, "sizes": [{"from": 0.5, "to": 1.0}],
         "color": ["D", "E", "F", "G"], "clarity": ["VS1", "VS2"], "availability": ["AVAILABLE"]}
    expected = [s.stone_id for s in inv.stones() if s.shape in ("OVAL", "PEAR") and not s.labgrown
                and 50 <= s.ct100 <= 100 and s.color in "DEFG" and s.clarity in ("VS1", "VS2")
                and s.availability == "AVAILABLE"]
    assert expected
    assert ids(inv.search(q)) == expected
    assert all(s.labgrown for s in inv.search({"labgrown": True}))
    assert inv.count({"labgrown": True}) + inv.count({"labgrown": False}) == len(inv)


def test_ids_filter_and_orders(inv: Inventory) -> None:
    some = [s.stone_id for s in inv.stones()[10:20]]
    assert sorted(ids(inv.search({"ids": some}))) == sorted(some)
    by_created = inv.search({})
    assert [(s.created_ms, s.stone_id) for s in by_created] == sorted((s.created_ms, s.stone_id) for s in by_created)
    by_price = inv.search({}, "price")
    assert [s.price_cents for s in by_price] == sorted(s.price_cents for s in by_price)
    assert inv.search({}, "price", descending=True) == by_price[::-1]


def test_paging_by_offset_returns_each_stone_once(inv: Inventory) -> None:
    q = {"dollar_per_carat": {"from": 0, "to": 1999}, "updated": {"to": iso(EPOCH_END_MS)}}
    got: list[str] = []
    offset = 0
    while True:
        page, total = inv.page(q, offset, 50)
        if not page:
            break
        got += ids(page)
        offset += len(page)
    assert got == ids(inv.search(q))
    assert total == len(got) == len(set(got))


# ---- trading -------------------------------------------------------------------------------------

def test_hold_double_hold_cancel_and_order(inv: Inventory) -> None:
    stone = next(s for s in inv.stones() if s.availability == "AVAILABLE")
    hold = inv.create_hold(stone.stone_id)
    assert hold.id
    assert not hold.denied
    assert hold.until_ms == int(NOW_S * 1000) + HOLD_DURATION_MS
    assert state(stone) == ("ON HOLD", hold.id)
    assert stone.updated_ms == int(NOW_S * 1000)
    again = inv.create_hold(stone.stone_id)
    assert again.denied
    assert again.id == hold.id
    assert inv.cancel_hold(hold.id) == hold.id
    assert state(stone) == ("AVAILABLE", None)
    order_id = inv.create_order([stone.offer_id])
    assert order_id
    assert state(stone) == ("SOLD", None)
    assert inv.create_hold(stone.stone_id).denied
    with pytest.raises(SandboxError, match="sold"):
        inv.create_order([stone.offer_id])
    with pytest.raises(SandboxError, match="unknown offerId"):
        inv.create_order(["no-such-offer"])
    with pytest.raises(SandboxError, match="not found"):
        inv.cancel_hold("no-such-hold")


def test_order_is_all_or_nothing(inv: Inventory) -> None:
    a, b = [s for s in inv.stones() if s.availability == "AVAILABLE"][:2]
    inv.create_order([b.offer_id])
    with pytest.raises(SandboxError):
        inv.create_order([a.offer_id, b.offer_id])
    assert a.availability == "AVAILABLE"


# ---- admin changes -------------------------------------------------------------------------------

def test_reprice_changes_prices_bumps_updated_and_reindexes(inv: Inventory) -> None:
    before = {s.stone_id: s.price_cents for s in inv.stones()}
    changed = inv.reprice(0.1, 1.5, seed=1)
    assert len(changed) == 300
    assert changed == inv.reprice(0.0, 1.0, seed=1, ids=changed)
    for stone_id in changed:
        s = inv.get(stone_id)
        assert s is not None
        assert s.updated_ms == int(NOW_S * 1000)
        assert s.price_cents == round(round(before[stone_id] * 1.5) * 1.0)
        assert stone_id in ids(inv.search({"dollar_per_carat": {"from": s.ppc_floor, "to": s.ppc_floor}}))
    recent = inv.search({"updated": {"from": iso(int(NOW_S * 1000))}})
    assert sorted(ids(recent)) == sorted(changed)


def test_remove_hides_stones_everywhere(inv: Inventory) -> None:
    removed = inv.remove(25, seed=2)
    assert len(removed) == 25
    assert len(inv) == 2975
    assert all(inv.get(i) is None for i in removed)
    assert not set(removed) & set(ids(inv.search({})))
    assert inv.search({"ids": removed}) == []


def test_add_and_set_availability(inv: Inventory) -> None:
    added = inv.add(7)
    assert len(inv) == 3007
    assert all(inv.get(s.stone_id) is s for s in added)
    assert all(s.created_ms == s.updated_ms == int(NOW_S * 1000) for s in added)
    assert ids(inv.search({}))[-7:] == ids(sorted(added, key=lambda s: s.stone_id))
    sold = inv.set_availability(5, "SOLD", seed=3)
    assert len(sold) == 5
    assert inv.count({"availability": ["SOLD"]}) == 5
    with pytest.raises(ValueError, match="availability"):
        inv.set_availability(1, "GONE")
    stats = inv.stats()
    assert stats["count"] == 3007
    assert stats["labgrown"] + stats["natural"] == 3007
    assert stats["availability"]["SOLD"] == 5


# ---- faults --------------------------------------------------------------------------------------

def test_fail_next_is_served_in_order_then_nothing() -> None:
    inv = Inventory(0)
    inv.faults.configure(fail_next=[429, 500, 503])
    assert [inv.faults.decide().status for _ in range(4)] == [429, 500, 503, None]
    with pytest.raises(ValueError, match="fail_next"):
        inv.faults.configure(fail_next=[200])
    with pytest.raises(ValueError, match="rate_429"):
        inv.faults.configure(rate_429=2.0)


def test_short_pages_only_truncate_mid_range() -> None:
    inv = Inventory(0)
    inv.faults.configure(short_page_rate=1.0, seed=4)
    lengths = [inv.faults.page_length(50, more_after=True) for _ in range(200)]
    assert all(1 <= n < 50 for n in lengths)
    assert inv.faults.page_length(50, more_after=False) == 50  # the last page of a range is never cut
    assert inv.faults.page_length(1, more_after=True) == 1  # never empty: empty means "end of range"
    inv.faults.reset()
    assert inv.faults.page_length(50, more_after=True) == 50
