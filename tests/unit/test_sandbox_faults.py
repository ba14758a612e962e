"""Fault configuration, schedules, malformed records, token limits, latency and throttling, without HTTP."""

from __future__ import annotations

import copy
import random
import statistics
from typing import Any

import pytest
from graphql import GraphQLError

from opus.sandbox.auth import TokenStore
from opus.sandbox.config import Behaviour, Latency
from opus.sandbox.faults import Faults, RequestFault
from opus.sandbox.inventory import Inventory
from opus.sandbox.malform import MALFORM_KINDS, malform, malform_stones
from opus.sandbox.options import build_config, fault_flags
from opus.sandbox.render import render_item
from opus.sandbox.traffic import LatencySampler, Traffic, retry_after_header


class SteppableClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def page_body(count: int = 20) -> dict[str, Any]:
    inv = Inventory(count, seed=3)
    items = [render_item(s, inv.supplier_of(s)) for s in inv.stones()]
    return {"data": {"as": {"diamonds_by_query": {"total_count": count, "items": items}}}}


# ---- request faults ------------------------------------------------------------------------------

def test_fail_next_takes_statuses_and_kinds_in_order() -> None:
    faults = Faults()
    faults.configure(fail_next=[502, "drop", "graphql_error", "truncate", "slow", "429"])
    assert [faults.decide() for _ in range(7)] == [
        RequestFault(status=502), RequestFault(drop=True), RequestFault(graphql_error=True),
        RequestFault(truncate=True), RequestFault(slow=True), RequestFault(status=429), RequestFault()]
    with pytest.raises(ValueError, match="fail_next"):
        faults.configure(fail_next=["teapot"])


def test_every_nth_request_is_a_schedule() -> None:
    faults = Faults()
    faults.configure(every_503=3, every_drop=4)
    outcomes = [faults.decide() for _ in range(12)]
    assert [i + 1 for i, f in enumerate(outcomes) if f.status == 503] == [3, 6, 9, 12]
    assert [i + 1 for i, f in enumerate(outcomes) if f.drop] == [4, 8, 12]
    faults.configure(every_503=3)  # a new configuration counts from its own first request
    assert [faults.decide().status for _ in range(3)] == [None, None, 503]


def test_rates_are_seeded_and_replayable() -> None:
    def run(seed: int) -> list[RequestFault]:
        faults = Faults()
        faults.configure(rate_500=0.2, rate_graphql_error=0.1, rate_truncate=0.1, seed=seed)
        return [faults.decide() for _ in range(400)]

    first = run(5)
    assert first == run(5)
    assert first != run(6)
    assert 50 <= sum(f.status == 500 for f in first) <= 110
    assert sum(f.graphql_error for f in first)
    assert sum(f.truncate for f in first)


@pytest.mark.parametrize(("body", "message"), [
    ({"rate_502": 1.5}, "rate_502"), ({"every_429": 0}, "every_429"), ({"rate_teapot": 0.1}, "unknown"),
    ({"malformed": {"null_id": 2}}, "malformed.null_id"), ({"malformed": {"bad": 0.1}}, "unknown malformed"),
    ({"token_max_requests": 0}, "token_max_requests"), ({"slow_ms": "long"}, "slow_ms"),
])
def test_bad_fault_settings_are_refused_by_name(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults().configure_from(body)


def test_snapshot_shows_everything_and_an_empty_configuration_clears_it() -> None:
    faults = Faults()
    shown = faults.configure(rate_429=0.5, every_slow=2, malformed={"null_id": 0.1}, token_max_requests=9)
    assert shown["rate_429"] == 0.5
    assert shown["every_slow"] == 2
    assert shown["malformed"] == {"null_id": 0.1}
    assert shown["token_max_requests"] == 9
    assert faults.snapshot() == shown
    cleared = faults.configure_from({})
    assert cleared["rate_429"] == 0.0
    assert cleared["every_slow"] is None
    assert cleared["malformed"] == {}


# ---- malformed records ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MALFORM_KINDS))
def test_each_malformed_kind_damages_every_record_at_rate_one(kind: str) -> None:
    body = page_body()
    before = copy.deepcopy(body)
    damaged = malform(body, {kind: 1.0}, random.Random(1))
    items = body["data"]["as"]["diamonds_by_query"]["items"]
    assert damaged[kind] == len(items) == 20
    diamonds = [i["diamond"] for i in items]
    certs = [d["certificate"] for d in diamonds]
    checks = {
        "null_id": all(d["id"] is None for d in diamonds),
        "price_not_number": all(i["price"] == "n/a" for i in items),
        "wrong_type": all(isinstance(c["shape"], dict) for c in certs),
        "eye_clean_text": all(d["eyeClean"] == "100%" for d in diamonds),
        "fancy_without_color": all(c["color"] == "Fancy" and c["f_color"] is None for c in certs),
        "flo_abbreviation": all(c["floInt"] == "VSL" for c in certs),
        "labgrown_null": all(c["labgrown"] is None for c in certs),
        "image_on_certificate_only": all(d["image"] is None and c["image"]
                                         for d, c in zip(diamonds, certs, strict=True)),
        "video_fallback_only": all(d["video"] is None and d["v360"] is None for d in diamonds),
        "nul_in_text": all(any(str(c.get(name)).endswith("\x00") for name in ("lab", "shape", "color")) for c in certs),
    }
    assert checks[kind]
    assert body != before


def test_malformed_records_touch_only_selected_fields_and_respect_the_rate() -> None:
    body = {"data": {"as": {"diamonds_by_query": {"items": [{"id": str(i), "diamond": {"id": str(i)}}
                                                            for i in range(1000)]}}}}
    damaged = malform(body, {"null_id": 0.1, "price_not_number": 1.0, "eye_clean_text": 1.0}, random.Random(2))
    assert 60 <= damaged["null_id"] <= 140
    assert damaged["price_not_number"] == damaged["eye_clean_text"] == 0  # price, eyeClean not selected
    assert all("price" not in i and "eyeClean" not in i["diamond"]
               for i in body["data"]["as"]["diamonds_by_query"]["items"])


def test_named_stones_are_malformed_on_every_fetch_and_no_other() -> None:
    faults = Faults()
    shown = faults.configure(malformed_stones={"nul_in_text": ["3"], "null_id": ["5", "6"]})
    assert shown["malformed_stones"] == {"nul_in_text": ["3"], "null_id": ["5", "6"]}
    for _ in range(3):  # a retry does not heal it, unlike a rate
        body = {"data": {"items": [{"diamond": {"id": str(i), "certificate": {"lab": "GIA"}}} for i in range(8)]}}
        damaged = malform_stones(body, faults.settings.malformed_stones)
        assert damaged == {"nul_in_text": 1, "null_id": 2}
        diamonds = [i["diamond"] for i in body["data"]["items"]]
        assert [d["id"] for d in diamonds] == ["0", "1", "2", "3", "4", None, None, "7"]
        assert [d["certificate"]["lab"] for d in diamonds] == ["GIA"] * 3 + ["GIA\x00"] + ["GIA"] * 4
    for bad, match in (({"nul_in_text": "3"}, "list of stone ids"), ({"bad": ["3"]}, "unknown malformed_stones"),
                       (["3"], "malformed_stones must be an object")):
        with pytest.raises(ValueError, match=match):
            faults.configure(malformed_stones=bad)
    assert faults.configure()["malformed_stones"] == {}


def test_the_malformed_stone_flag_gathers_ids_per_kind() -> None:
    flags = fault_flags(malformed_stones=["nul_in_text=A,B", "nul_in_text=C", "null_id=D"])
    assert flags == {"malformed_stones": {"nul_in_text": ["A", "B", "C"], "null_id": ["D"]}}
    with pytest.raises(ValueError, match="--malformed-stone"):
        fault_flags(malformed_stones=["nul_in_text"])


# ---- tokens that expire mid-run ------------------------------------------------------------------

def test_a_token_stops_working_after_n_requests_or_seconds() -> None:
    clock = SteppableClock()
    limits: list[tuple[int | None, float | None]] = [(3, None)]
    store = TokenStore("u", "p", 3600, clock, limits=lambda: limits[0])
    token, _ = store.issue("u", "p")
    for _ in range(3):
        store.check(token)
    with pytest.raises(GraphQLError, match="token expired"):
        store.check(token)
    limits[0] = (None, 60.0)
    fresh, _ = store.issue("u", "p")
    clock.now += 59
    store.check(fresh)
    clock.now += 1
    with pytest.raises(GraphQLError, match="token expired"):
        store.check(fresh)


# ---- latency and throttling ----------------------------------------------------------------------

def test_latency_is_log_normal_around_its_median_with_a_capped_tail() -> None:
    sampler = LatencySampler(seed=1)
    shape = Latency(median_ms=1500, sigma=0.8, cap_ms=10_000)
    samples = [sampler.sample_s(shape) for _ in range(4000)]
    assert 1.4 <= statistics.median(samples) <= 1.6
    assert max(samples) == 10.0  # the tail reaches the cap, and no further
    assert 0.005 <= sum(s == 10.0 for s in samples) / len(samples) <= 0.03
    replay = LatencySampler(seed=1)
    assert [replay.sample_s(shape) for _ in range(5)] == samples[:5]  # same seed, same delays
    assert {sampler.sample_s(Latency(300, 0.0)) for _ in range(10)} == {0.3}


def test_throttle_admits_the_rate_in_a_sliding_second_and_counts_what_it_served() -> None:
    clock = SteppableClock(1000.0)
    traffic = Traffic(clock)
    assert [traffic.admit(5) for _ in range(5)] == [None] * 5
    assert traffic.admit(5) == pytest.approx(1.0)
    clock.now += 0.6
    assert traffic.admit(5) == pytest.approx(0.4)  # the window slides: the first five leave at 1001.0
    clock.now += 0.4
    assert [traffic.admit(5) for _ in range(5)] == [None] * 5
    assert traffic.admit(None) is None  # no limit, no throttling
    stats = traffic.stats()
    assert (stats["served"], stats["throttled"], stats["max_per_second"]) == (11, 2, 6)
    assert stats["per_second"] == {"1000": 5, "1001": 6}
    assert retry_after_header(0.4) == "1"
    assert retry_after_header(2.2) == "3"


# ---- flags -------------------------------------------------------------------------------------

def test_flags_build_on_the_preset() -> None:
    faults = fault_flags(["429=0.01", "drop=0.02"], ["503=10"], ["null_id=0.001"], "500,drop", slow_ms=9000,
                         short_page_rate=None)
    assert faults == {"rate_429": 0.01, "rate_drop": 0.02, "every_503": 10, "malformed": {"null_id": 0.001},
                      "fail_next": [500, "drop"], "slow_ms": 9000}
    config = build_config(True, None, behaviour={"throttle_rps": 0, "staging": True},
                          latency={"median_ms": 10.0, "sigma": None}, faults=faults)
    assert config.realistic
    assert config.behaviour.throttle_rps is None
    assert config.behaviour.staging
    assert config.behaviour.latency == Latency(median_ms=10.0, sigma=0.8, cap_ms=45_000)
    assert config.faults["short_page_rate"] == 0.02
    assert config.faults["rate_429"] == 0.01
    assert build_config().behaviour == Behaviour()
    with pytest.raises(ValueError, match="--fault"):
        fault_flags(["teapot=1"])
    with pytest.raises(ValueError, match="rate_429"):
        fault_flags(["429=3"])
