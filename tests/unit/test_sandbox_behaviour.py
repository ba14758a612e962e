"""Production-like behaviours of the sandbox inventory and schema: count noise, hold lifecycle, realistic
stones, staging mode and the schema details production has. Each is off unless asked for."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from typing import Any

import pytest

from opus.sandbox.auth import TokenStore
from opus.sandbox.config import Behaviour, SandboxConfig
from opus.sandbox.holds import HOLD_DURATION_MS
from opus.sandbox.inventory import Inventory
from opus.sandbox.render import render_item
from opus.sandbox.resolvers import GraphQLExecutor, RequestContext

NOW_S = 1_800_000_000.0
NOISY = Behaviour(count_noise=True)


class SteppableClock:
    def __init__(self, now: float = NOW_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def noisy() -> Inventory:
    return Inventory(10_000, seed=17, behaviour=NOISY)


@pytest.fixture(scope="module")
def realistic() -> Inventory:
    return Inventory(12_000, seed=23, realistic=True)


def bucket_totals(inv: Inventory, name: str, bounds: list[int]) -> tuple[int, int]:
    """(exact, reported) summed over half-open buckets [a, b) of one price filter."""
    exact = reported = 0
    for a, b in itertools.pairwise(bounds):
        q = {name: {"from": a, "to": b - 1}}
        exact += inv.count(q)
        reported += inv.reported_count(q)
    return exact, reported


# ---- count noise ---------------------------------------------------------------------------------

def test_counts_are_exact_unless_noise_is_on() -> None:
    inv = Inventory(2000, seed=17)
    q = {"dollar_value": {"from": 0, "to": 10**7}}
    assert inv.reported_count(q) == inv.count(q) == 2000


def test_dollar_value_buckets_undercount_by_about_two_percent(noisy: Inventory) -> None:
    exact, reported = bucket_totals(noisy, "dollar_value", [0, 500, 1000, 2000, 4000, 8000, 20_000, 10**7])
    assert exact == len(noisy)
    assert 0.015 <= 1 - reported / exact <= 0.025


def test_dollar_per_carat_buckets_undercount_by_about_a_seventh_of_a_percent(noisy: Inventory) -> None:
    exact, reported = bucket_totals(noisy, "dollar_per_carat", [0, 200, 400, 800, 1600, 3200, 10**7])
    assert exact == len(noisy)
    assert 0.0005 <= 1 - reported / exact <= 0.003
    assert reported < exact


def test_count_noise_is_deterministic_per_seed_and_query(noisy: Inventory) -> None:
    q = {"dollar_value": {"from": 0, "to": 3000}}
    again = Inventory(10_000, seed=17, behaviour=NOISY)
    assert noisy.reported_count(q) == again.reported_count(q) == noisy.reported_count(dict(q))
    other_seed = Inventory(10_000, seed=18, behaviour=NOISY)
    assert other_seed.count(q) != other_seed.reported_count(q)
    assert noisy.reported_count({"dollar_value": {"from": 0, "to": 3001}}) <= noisy.count(
        {"dollar_value": {"from": 0, "to": 3001}})


def test_a_range_returns_rows_past_its_count_yet_every_stone_once(noisy: Inventory) -> None:
    noisy.faults.configure(rows_past_count=0.4)
    try:
        q = {"dollar_per_carat": {"from": 0, "to": 10**7}}
        counted = noisy.reported_count(q)
        got: list[str] = []
        offset = 0
        while page := noisy.page(q, offset, 50)[0]:
            got += [s.stone_id for s in page]
            offset += len(page)
        assert counted < 0.65 * len(noisy)  # counted like 51,906 of a range that returned 89,850
        assert len(got) == len(set(got)) == len(noisy)
    finally:
        noisy.faults.reset()


# ---- hold lifecycle ------------------------------------------------------------------------------

def test_a_hold_lapses_at_its_until_by_the_inventory_clock() -> None:
    clock = SteppableClock()
    inv = Inventory(300, seed=3, clock=clock, behaviour=Behaviour(hold_expiry=True))
    stone = next(s for s in inv.stones() if s.availability == "AVAILABLE")
    hold = inv.create_hold(stone.stone_id)
    assert hold.until_ms == int(NOW_S * 1000) + HOLD_DURATION_MS
    clock.now += HOLD_DURATION_MS / 1000 - 1
    assert inv.get(stone.stone_id).availability == "ON HOLD"  # type: ignore[union-attr]
    clock.now += 1
    lapsed = inv.get(stone.stone_id)
    assert lapsed is not None
    assert (lapsed.availability, lapsed.hold_id) == ("AVAILABLE", None)
    assert lapsed.updated_ms == hold.until_ms  # a lapse is a change an incremental run must see
    assert inv.count({"availability": ["ON_HOLD"]}) < 300
    with pytest.raises(Exception, match="hold not found"):
        inv.cancel_hold(hold.id or "")
    assert not inv.create_hold(stone.stone_id).denied


def test_other_buyers_holds_lapse_within_a_day_and_never_without_expiry() -> None:
    clock = SteppableClock()
    forever = Inventory(400, seed=4, clock=clock)
    expiring = Inventory(400, seed=4, clock=clock, behaviour=Behaviour(hold_expiry=True))
    held = forever.count({"availability": ["ON HOLD"]})
    assert held == expiring.count({"availability": ["ON HOLD"]}) > 0
    clock.now += HOLD_DURATION_MS / 1000
    assert forever.count({"availability": ["ON HOLD"]}) == held
    assert expiring.count({"availability": ["ON HOLD"]}) == 0


def test_a_supplier_that_allows_no_holds_denies_them() -> None:
    inv = Inventory(600, seed=5, clock=SteppableClock(), behaviour=Behaviour(no_hold_suppliers=0.3))
    available = [s for s in inv.stones() if s.availability == "AVAILABLE"]
    denied = [s for s in available if inv.supplier_denies_holds(s)]
    allowed = [s for s in available if not inv.supplier_denies_holds(s)]
    assert denied
    assert allowed
    assert 3 <= len({s.supplier for s in denied}) <= 25  # about 30 % of 40 suppliers
    result = inv.create_hold(denied[0].stone_id)
    assert (result.id, result.denied, result.until_ms) == (None, True, None)
    assert denied[0].availability == "AVAILABLE"
    assert not inv.create_hold(allowed[0].stone_id).denied
    assert not Inventory(600, seed=5).create_hold(denied[0].stone_id).denied  # off by default


def test_a_stone_held_by_another_buyer_cannot_be_held_and_their_hold_id_stays_hidden() -> None:
    inv = Inventory(600, seed=6, clock=SteppableClock())
    theirs = next(s for s in inv.stones() if s.availability == "ON HOLD")
    assert theirs.hold_id
    result = inv.create_hold(theirs.stone_id)
    assert (result.id, result.denied) == (None, True)
    mine = next(s for s in inv.stones() if s.availability == "AVAILABLE")
    hold = inv.create_hold(mine.stone_id)
    assert inv.create_hold(mine.stone_id).id == hold.id  # a buyer's own hold is shown back to it


# ---- realistic inventory -------------------------------------------------------------------------

def test_realistic_prices_follow_the_market(realistic: Inventory) -> None:
    stones = realistic.stones()
    lab = [s.ppc_floor for s in stones if s.labgrown]
    natural = [s for s in stones if not s.labgrown]
    assert sum(p < 250 for p in lab) / len(lab) >= 0.85
    assert 1300 <= statistics.median(s.ppc_floor for s in natural) <= 1700

    def median_ppc(pred: Any) -> float:
        return statistics.median(s.ppc_floor for s in natural if pred(s))

    assert median_ppc(lambda s: s.ct100 >= 200) > 3 * median_ppc(lambda s: s.ct100 < 50)
    assert median_ppc(lambda s: s.color in "DEF" and s.clarity in ("FL", "IF", "VVS1")) > 1.5 * median_ppc(
        lambda s: s.color in "IJK" and s.clarity in ("SI2", "I1", "I2"))


def test_realistic_inventory_has_a_dense_price_per_carat_band(realistic: Inventory) -> None:
    per_dollar = Counter(s.ppc_floor for s in realistic.stones())
    densest = max(sum(per_dollar[p + i] for i in range(5)) for p in range(0, 1000))
    # tens of thousands at 1.3 M stones within a few dollars: at least 2 % of the inventory in $5
    assert densest >= 0.02 * len(realistic)


def test_realistic_availability_small_stones_and_missing_media(realistic: Inventory) -> None:
    stones = realistic.stones()
    share = Counter(s.availability for s in stones)
    assert share["AVAILABLE"] / len(stones) >= 0.8
    for rare in ("ON HOLD", "MEMO", "SOLD"):
        assert 0.01 <= share[rare] / len(stones) <= 0.08
    assert sum(s.ct100 < 40 for s in stones) / len(stones) >= 0.05
    bare = [s for s in stones if not s.has_image and not s.has_video]
    assert len(bare) / len(stones) >= 0.08
    item = render_item(bare[0], realistic.supplier_of(bare[0]))
    assert item["diamond"]["image"] is item["diamond"]["video"] is item["diamond"]["certificate"]["image"] is None


def test_realistic_inventory_is_deterministic_and_leaves_the_plain_one_alone() -> None:
    assert Inventory(500, seed=8, realistic=True).stones() == Inventory(500, seed=8, realistic=True).stones()
    plain = Inventory(500, seed=8).stones()
    assert [s.stone_id for s in plain] == [s.stone_id for s in Inventory(500, seed=8, realistic=True).stones()]
    assert [s.price_cents for s in plain] != [s.price_cents for s in Inventory(500, seed=8, realistic=True).stones()]


# ---- schema details and staging ------------------------------------------------------------------

STAGING_SELECTION = "diamonds_by_query(query: $query, limit: 2) {{ items {{ diamond {{ certificate {{ {} }} }} }} }}"


def run_scoped(inv: Inventory, selection: str, staging: bool = False, **variables: Any) -> dict[str, Any]:
    clock = SteppableClock()
    tokens = TokenStore("sandbox", "sandbox", 3600, clock)
    token, _ = tokens.issue("sandbox", "sandbox")
    document = f"query ($token: String!, $query: DiamondQuery!) {{ as(token: $token) {{ {selection} }} }}"
    return GraphQLExecutor().execute(document, {"token": token, **variables}, None,
                                     RequestContext(inv, tokens), staging=staging)


@pytest.mark.parametrize("field", ["clarity", "floInt", "floCol", "labgrown_type"])
def test_staging_rejects_its_enum_fields_naming_them(field: str) -> None:
    inv = Inventory(50, seed=9)
    body = run_scoped(inv, STAGING_SELECTION.format(f"carats {field}"), staging=True, query={})
    assert "data" not in body
    assert field in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "errors" not in run_scoped(inv, STAGING_SELECTION.format(f"carats {field}"), query={})


def test_staging_serves_a_query_without_those_fields() -> None:
    body = run_scoped(Inventory(50, seed=9), STAGING_SELECTION.format("carats color lab"), staging=True, query={})
    assert "errors" not in body
    assert len(body["data"]["as"]["diamonds_by_query"]["items"]) == 2


def test_count_accepts_order_and_availability_accepts_what_the_data_holds() -> None:
    inv = Inventory(400, seed=10)
    held = sum(s.availability == "ON HOLD" for s in inv.stones())
    assert held
    for spelled in ("ON HOLD", "ON_HOLD", "on hold", "HOLD"):
        body = run_scoped(inv, "diamonds_by_query_count(query: $query, order: {type: price, direction: DESC})",
                          query={"availability": [spelled]})
        assert body == {"data": {"as": {"diamonds_by_query_count": held}}}
    literal = run_scoped(inv, "all: diamonds_by_query_count(query: $query)"
                              " some: diamonds_by_query_count(query: {availability: [AVAILABLE, MEMO]})", query={})
    assert literal["data"]["as"]["some"] == sum(
        s.availability in ("AVAILABLE", "MEMO") for s in inv.stones())
    wrong = run_scoped(inv, "diamonds_by_query_count(query: $query)", query={"availability": ["GONE"]})
    assert "Availability cannot represent value 'GONE'" in wrong["errors"][0]["message"]


def test_return_window_is_a_string_or_null() -> None:
    selection = "diamonds_by_query(query: $query) { items { diamond { return_window } } }"
    body = run_scoped(Inventory(30, seed=11), selection, query={})
    windows = {i["diamond"]["return_window"] for i in body["data"]["as"]["diamonds_by_query"]["items"]}
    assert windows == {"30 days", None}


def test_production_like_preset_turns_the_realistic_set_on() -> None:
    preset = SandboxConfig.production_like()
    assert preset.realistic
    b = preset.behaviour
    assert (b.count_noise, b.hold_expiry, b.throttle_rps) == (True, True, 30.0)
    assert b.latency is not None
    assert (b.latency.median_ms, b.latency.cap_ms) == (1500, 45_000)
    assert not b.staging
    assert preset.faults["short_page_rate"] > 0
    assert SandboxConfig().behaviour == Behaviour()  # and the default is the faithful sandbox of before
