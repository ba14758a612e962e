"""Feeds as configuration: the feeds file, the merge of a feed's filters into each request, the login that does
not depend on `expires`, the staging selection, and the token bucket's arithmetic on a steppable clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opus.config import load_settings
from opus.domain.heatmap import AXIS_MAX
from opus.domain.models import FeedConfig, FeedQuery
from opus.errors import ConfigError
from opus.feeds import NivodaClient
from opus.feeds import nivoda_queries as q
from opus.feeds.catalog import DEFAULT_FEED, FeedsFileError, default_feed, enabled_feeds, find_feed, load_feeds
from opus.feeds.nivoda_responses import DEFAULT_TOKEN_LIFETIME_S
from opus.feeds.ratelimit import TokenBucket

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "feeds.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the feeds file -----------------------------------------------------------------------------------
def test_no_file_is_one_feed_named_nivoda_without_filters() -> None:
    assert load_feeds(None) == (DEFAULT_FEED,) == (FeedConfig("nivoda", {}, True),)
    assert load_settings().feeds == (DEFAULT_FEED,)


def test_the_shipped_file_holds_the_natural_and_lab_grown_feeds() -> None:
    feeds = load_feeds(REPO / "config" / "feeds.toml")
    assert [(f.name, f.query["labgrown"], f.enabled) for f in feeds] == [
        ("nivoda-natural", False, True), ("nivoda-labgrown", True, True)]
    assert default_feed(feeds).name == "nivoda-natural"


def test_toml_and_json_files_read_alike(tmp_path: Path) -> None:
    toml = write(tmp_path, """
[feeds.natural]
query = { labgrown = false, shapes = ["ROUND", "OVAL"], sizes = { from = 0.3, to = 5.0 } }
[feeds.lab]
enabled = false
query = { labgrown = true, dollar_per_carat = { from = 50 } }
""")
    document = {"feeds": {"natural": {"query": {"labgrown": False, "shapes": ["ROUND", "OVAL"],
                                                "sizes": {"from": 0.3, "to": 5.0}}},
                          "lab": {"enabled": False, "query": {"labgrown": True, "dollar_per_carat": {"from": 50}}}}}
    as_json = write(tmp_path, json.dumps(document), "feeds.json")
    assert load_feeds(toml) == load_feeds(as_json)
    feeds = load_feeds(toml)
    assert [f.name for f in enabled_feeds(feeds)] == ["natural"]
    assert find_feed(feeds, "lab").query == {"labgrown": True, "dollar_per_carat": {"from": 50}}
    with pytest.raises(KeyError, match="natural, lab"):
        find_feed(feeds, "missing")


@pytest.mark.parametrize(("text", "named"), [
    ('[feeds.a]\nquery = { labgrwn = true }', "unknown filter 'labgrwn'"),
    ('[feeds.a]\nquery = { labgrown = "yes" }', "filter 'labgrown' must be true or false"),
    ('[feeds.a]\nquery = { shapes = "ROUND" }', "filter 'shapes' must be a non-empty list"),
    ('[feeds.a]\nquery = { dollar_per_carat = { from = 10, to = 5 } }', "filter 'dollar_per_carat'"),
    ('[feeds.a]\nquery = { dollar_per_carat = { from = 10.5 } }', "must be whole numbers"),
    ('[feeds.a]\nquery = { sizes = [{ from = 1, upto = 2 }] }', "filter 'sizes'"),
    ('[feeds.a]\nquery = { updated = { from = "2026-01-01" } }', "filter 'updated' is set by each run"),
    ('[feeds.a]\nquery = { ids = ["x"] }', "filter 'ids' is set by each run"),
    ('[feeds.a]\nenabeld = true', "unknown key 'enabeld'"),
    ('[feeds.a]\nenabled = "no"', "key 'enabled' must be true or false"),
    ('[feeds.A]\nenabled = true', "feed name 'A'"),
    ('[feeds.a]\nenabled = false', "no feed is enabled"),
    ('[feed.a]\nenabled = true', "unknown top-level key 'feed'"),
    ('feeds = 3', "`feeds` must be a table"),
    ('[feeds.a\n', "not valid TOML"),
])
def test_a_bad_file_is_refused_naming_the_bad_key(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FeedsFileError, match=named.replace("(", r"\(")):
        load_feeds(path)


def test_settings_refuse_a_bad_feeds_file_at_start_naming_the_variable_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[feeds.a]\nquery = { has_imgae = true }')
    with pytest.raises(ConfigError, match=r"FEEDS_FILE: .*unknown filter 'has_imgae'"):
        load_settings(feeds_file=path)
    with pytest.raises(ConfigError, match=r"FEEDS_FILE: .*cannot be read"):
        load_settings(feeds_file=tmp_path / "absent.toml")


# --- merging a feed's filters into a request ------------------------------------------------------------
FILTERS: dict[str, Any] = {"labgrown": True, "shapes": ["ROUND"], "has_image": True,
                           "dollar_per_carat": {"from": 100, "to": 9_999}}


def test_the_partition_and_window_narrow_the_feed_filters_and_keep_the_rest() -> None:
    window = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    sent = q.diamond_query(FeedQuery(50, 500, *window, filters=FILTERS))
    assert sent == {"labgrown": True, "shapes": ["ROUND"], "has_image": True,
                    "dollar_per_carat": {"from": 100, "to": 499},  # the feed's floor, the partition's ceiling
                    "updated": {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T00:00:00.000Z"}}
    assert q.diamond_query(FeedQuery(filters=FILTERS))["dollar_per_carat"] == {"from": 100, "to": 9_999}
    assert q.diamond_query(FeedQuery(ids=("a", "b"), filters={"labgrown": False})) == {
        "labgrown": False, "ids": ["a", "b"]}
    assert FILTERS["dollar_per_carat"] == {"from": 100, "to": 9_999}, "the feed's own filters stay unchanged"


def test_a_partition_outside_the_feed_bounds_asks_nothing() -> None:
    assert q.is_empty_range(FeedQuery(10_000, 20_000, filters=FILTERS))
    assert q.is_empty_range(FeedQuery(0, 100, filters=FILTERS))
    assert not q.is_empty_range(FeedQuery(0, 101, filters=FILTERS))
    assert q.is_empty_range(FeedQuery(5, 5))


def test_the_top_partition_is_open_ended_not_the_axis_sentinel() -> None:
    assert q.diamond_query(FeedQuery(100_000, AXIS_MAX)) == {"dollar_per_carat": {"from": 100_000}}
    assert q.diamond_query(FeedQuery(0, AXIS_MAX, filters={"dollar_per_carat": {"to": 800}})) == {
        "dollar_per_carat": {"from": 0, "to": 800}}


# --- login and staging --------------------------------------------------------------------------------
class StrictLogin:
    """A Nivoda whose schema has no `expires`: selecting it fails validation, as a GraphQL server reports it."""

    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "authenticate" in body["query"]:
            self.logins.append(body["query"])
            if "expires" in body["query"]:
                message = 'Cannot query field "expires" on type "AuthenticatePayload".'
                return httpx.Response(400, json={"errors": [{"message": message}]})
            payload = {"token": "tok-1"}
            return httpx.Response(200, json={"data": {"authenticate": {"username_and_password": payload}}})
        return httpx.Response(200, json={"data": {"as": {"diamonds_by_query_count": 5}}})


@pytest.mark.parametrize("status", [400, 200])
def test_login_without_expires_logs_in_with_the_token_alone_and_assumes_six_hours(status: int) -> None:
    server = StrictLogin()

    def answer(request: httpx.Request) -> httpx.Response:
        response = server(request)
        return httpx.Response(status, json=response.json()) if response.status_code == 400 else response

    clock = [0.0]
    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = NivodaClient("https://nivoda.test/api", "user", "pw", http=http, clock=lambda: clock[0],
                          limiter=TokenBucket(10_000))
    assert client.count(FeedQuery()) == 5
    assert [("expires" in login) for login in server.logins] == [True, False]
    clock[0] = DEFAULT_TOKEN_LIFETIME_S - 301  # the assumed 6 h, refreshed 5 minutes early
    client.count(FeedQuery())
    assert len(server.logins) == 2
    clock[0] = DEFAULT_TOKEN_LIFETIME_S - 299
    client.count(FeedQuery())
    assert [("expires" in login) for login in server.logins] == [True, False, False], "expires is not asked again"


def test_staging_selection_leaves_out_exactly_the_fields_staging_rejects() -> None:
    for document in (q.page_document(staging=True), q.get_document(staging=True)):
        words = set(document.replace("{", " ").replace("}", " ").split())
        assert not words & set(q.STAGING_REJECTED_FIELDS)
        assert {"carats", "color", "labgrown", "product_images"} <= words
    production = set(q.PAGE.replace("{", " ").replace("}", " ").split())
    assert set(q.STAGING_REJECTED_FIELDS) <= production
    assert load_settings(nivoda_staging=True).nivoda_staging


# --- the token bucket's arithmetic ------------------------------------------------------------------------
class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_spaces_reservations_and_an_idle_bucket_allows_only_its_burst() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(4, burst=2, clock=clock)
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    clock.now += 10  # idle: at most `burst` back to back
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.25]


def test_a_pause_holds_back_every_reservation_until_it_ends() -> None:
    clock = SteppedClock()
    bucket = TokenBucket(10, clock=clock)
    assert bucket.reserve() == 0.0
    bucket.pause(2.0)
    bucket.pause(0.5)  # a shorter pause does not shorten the longer one
    assert bucket.reserve() == pytest.approx(2.0)
    assert bucket.reserve() == pytest.approx(2.1)
    clock.now += 5
    assert bucket.reserve() == 0.0
