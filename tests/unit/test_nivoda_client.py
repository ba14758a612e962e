"""Pure pieces of the Nivoda client, plus failures the sandbox cannot produce (canned HTTP answers)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest

from opus.domain.models import FeedQuery, HoldResult
from opus.errors import FeedAuthError, FeedPermanentError, FeedTransientError
from opus.feeds import NivodaClient
from opus.feeds import nivoda_queries as q
from opus.feeds.nivoda import BACKOFF_BASE_S, BACKOFF_CAP_S
from opus.feeds.nivoda_responses import (
    DEFAULT_TOKEN_LIFETIME_S,
    AuthRejected,
    NotFound,
    UnprocessedError,
    interpret,
    parse_until,
    refresh_margin_s,
    retry_after_s,
    token_lifetime_s,
)
from opus.feeds.ratelimit import TokenBucket
from opus.ports import Feed

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PASSWORD = "pa55-w0rd-never-logged"
TOKEN = "tok-secret-never-logged"


# --- token lifetime -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expires", "lifetime"),
    [
        (NOW * 1000 + 3_600_000, 3600.0),  # epoch milliseconds
        (int(NOW) + 7200, 7200.0),  # epoch seconds
        (21_600, 21_600.0),  # seconds from now
        (2, 2.0),  # a very short-lived token
        ("3600", 3600.0),  # numeric string
        (str(int(NOW * 1000) + 60_000), 60.0),  # epoch milliseconds as a string
        ("2026-01-01T01:00:00Z", 3600.0),  # an ISO-8601 moment
    ],
)
def test_token_lifetime_reads_every_unit(expires: object, lifetime: float) -> None:
    assert token_lifetime_s(expires, NOW) == pytest.approx(lifetime)


@pytest.mark.parametrize("expires", [None, "", "soon", True, float("nan"), {"at": 1}, 0, -5, NOW - 10])
def test_token_lifetime_defaults_to_six_hours_when_unreadable_or_past(expires: object) -> None:
    assert token_lifetime_s(expires, NOW) == DEFAULT_TOKEN_LIFETIME_S == 6 * 3600


def test_refresh_margin_is_five_minutes_but_at_most_half_the_lifetime() -> None:
    assert refresh_margin_s(6 * 3600) == 300
    assert refresh_margin_s(400) == 200
    assert refresh_margin_s(2) == 1


# --- variables ----------------------------------------------------------------------------------------
def test_half_open_range_becomes_inclusive_integer_bounds() -> None:
    assert q.diamond_query(FeedQuery(1000, 2000)) == {"dollar_per_carat": {"from": 1000, "to": 1999}}
    assert q.diamond_query(FeedQuery(ppc_from=1000)) == {"dollar_per_carat": {"from": 1000}}
    assert q.diamond_query(FeedQuery(ppc_to=500)) == {"dollar_per_carat": {"to": 499}}
    assert q.diamond_query(FeedQuery()) == {}


def test_updated_window_is_iso_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    query = FeedQuery(
        updated_from=datetime(2026, 1, 1, 2, 0, tzinfo=plus2),
        updated_to=datetime(2026, 1, 2, 3, 4, 5, 600_000),
    )
    assert q.diamond_query(query) == {
        "updated": {"from": "2026-01-01T00:00:00.000Z", "to": "2026-01-02T03:04:05.600Z"}
    }


def test_empty_range_is_detected() -> None:
    assert q.is_empty_range(FeedQuery(10, 10))
    assert q.is_empty_range(FeedQuery(10, 9))
    assert not q.is_empty_range(FeedQuery(10, 11))
    assert not q.is_empty_range(FeedQuery(ppc_from=10))


@pytest.mark.parametrize("limit", [0, -1, 51, 1000, True, 2.0])
def test_page_limit_outside_1_to_50_is_refused(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        q.page_variables(FeedQuery(), 0, limit)


def test_page_variables_order_by_creation_ascending() -> None:
    variables = q.page_variables(FeedQuery(1, 5), 100, 50)
    assert variables == {
        "query": {"dollar_per_carat": {"from": 1, "to": 4}},
        "offset": 100,
        "limit": 50,
        "order": {"type": "createdAt", "direction": "ASC"},
    }
    with pytest.raises(ValueError, match="offset"):
        q.page_variables(FeedQuery(), -1, 50)


def test_order_items_omit_absent_fields() -> None:
    assert q.order_items("o1", None, None) == [{"offerId": "o1"}]
    assert q.order_items("o1", "PO-7", "gift") == [
        {"offerId": "o1", "customer_order_number": "PO-7", "customer_comment": "gift"}
    ]


def test_selection_keeps_the_fields_staging_rejects() -> None:
    for name in ("clarity", "floInt", "floCol", "labgrown_type", "carats", "product_images"):
        assert name in q.CERTIFICATE_FIELDS
    assert "total_count" not in q.PAGE


def test_documents_validate_against_the_sandbox_schema() -> None:
    # graphql-core is a dependency and the schema ships in the package: if either is missing, this must fail.
    sdl = Path(__file__).resolve().parents[2] / "opus" / "sandbox" / "schema.graphql"
    schema = graphql.build_schema(sdl.read_text(encoding="utf-8"))
    for document in (q.AUTHENTICATE, q.COUNT, q.PAGE, q.GET, q.CREATE_HOLD, q.CANCEL_HOLD, q.CREATE_ORDER):
        assert graphql.validate(schema, graphql.parse(document)) == []


def test_hold_until_accepts_iso_and_epoch() -> None:
    expected = datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_until("2026-01-02T00:00:00Z") == expected
    assert parse_until("2026-01-02T00:00:00") == expected
    assert parse_until(expected.timestamp() * 1000) == expected
    assert parse_until(expected.timestamp()) == expected
    assert parse_until(None) is None
    assert parse_until("later") is None


# --- classification of canned answers -----------------------------------------------------------------
def _interpret(response: httpx.Response, **kwargs: Any) -> dict[str, Any]:
    return interpret(response, "op", now_wall=NOW, **kwargs)


def test_429_is_transient_unprocessed_with_retry_after() -> None:
    with pytest.raises(UnprocessedError) as caught:
        _interpret(httpx.Response(429, headers={"Retry-After": "3"}, text="slow down"))
    assert caught.value.retry_after == 3.0
    assert isinstance(caught.value, FeedTransientError)


def test_retry_after_as_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 7, tz=UTC)
    response = httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    assert retry_after_s(response, NOW) == pytest.approx(7.0)
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"}), NOW) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_with_invalid_json_is_transient(status: int) -> None:
    with pytest.raises(FeedTransientError, match=f"HTTP {status}") as caught:
        _interpret(httpx.Response(status, text="<html>Bad gateway</html>"))
    assert not isinstance(caught.value, UnprocessedError)  # it may have been processed


@pytest.mark.parametrize("text", ['{"data": {"as": {"diamonds_by_query": {"items": [{"id"', "<html>maintenance</html>"])
def test_a_success_status_with_a_body_that_is_not_json_is_transient(text: str) -> None:
    # A body cut off in transit, or a proxy's maintenance page: the answer was lost, not refused.
    with pytest.raises(FeedTransientError, match="not JSON"):
        _interpret(httpx.Response(200, text=text))


@pytest.mark.parametrize("error", [
    {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}},
    {"message": "upstream timed out", "extensions": {"code": "TIMEOUT"}},
    {"message": "Internal server error"},
])
def test_graphql_errors_that_report_a_server_fault_are_transient(error: dict[str, object]) -> None:
    with pytest.raises(FeedTransientError):
        _interpret(httpx.Response(200, json={"data": None, "errors": [error]}))


def test_graphql_errors_are_permanent_with_the_server_message() -> None:
    body = {"errors": [{"message": 'Cannot query field "carat" on type "Certificate".'}], "data": None}
    with pytest.raises(FeedPermanentError, match='Cannot query field "carat"'):
        _interpret(httpx.Response(200, json=body))
    with pytest.raises(FeedPermanentError, match="Expected type"):
        _interpret(httpx.Response(400, json={"errors": [{"message": "Expected type Int, found 1.5"}]}))


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, json={"data": None}),
        httpx.Response(200, json={}),
        httpx.Response(404, text="no such route"),
        httpx.Response(403, json={"errors": [{"message": "API Pro required"}]}),
        httpx.Response(302, headers={"Location": "https://elsewhere"}),
    ],
)
def test_other_4xx_and_answers_without_data_are_permanent(response: httpx.Response) -> None:
    with pytest.raises(FeedPermanentError):
        _interpret(response)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(401, text="Unauthorized"),
        httpx.Response(200, json={"errors": [{"message": "Unauthenticated"}], "data": {"as": None}}),
        httpx.Response(200, json={"errors": [{"message": "jwt expired"}]}),
        httpx.Response(200, json={"errors": [{"message": "Token has expired"}]}),
        httpx.Response(200, json={"errors": [{"message": "x", "extensions": {"code": "UNAUTHENTICATED"}}]}),
    ],
)
def test_auth_errors_are_signalled_for_reauthentication(response: httpx.Response) -> None:
    with pytest.raises(AuthRejected):
        _interpret(response)


def test_a_validation_error_naming_the_token_variable_is_not_an_auth_error() -> None:
    body = {"errors": [{"message": 'Variable "$token" of required type "String!" was not provided.'}]}
    with pytest.raises(FeedPermanentError):
        _interpret(httpx.Response(200, json=body))


def test_rate_limit_reported_in_errors_is_transient() -> None:
    with pytest.raises(UnprocessedError):
        _interpret(httpx.Response(200, json={"errors": [{"message": "Too many requests"}]}))


def test_not_found_only_where_tolerated() -> None:
    response = httpx.Response(200, json={"errors": [{"message": "Diamond not found"}], "data": {"as": None}})
    with pytest.raises(NotFound):
        _interpret(response, tolerate_not_found=True)
    with pytest.raises(FeedPermanentError):
        _interpret(response)


def test_secrets_never_appear_in_error_messages() -> None:
    body = {"errors": [{"message": f'Variable "$password" got invalid value "{PASSWORD}"; token {TOKEN}'}]}
    with pytest.raises(FeedPermanentError) as caught:
        _interpret(httpx.Response(400, json=body), secrets=(PASSWORD, TOKEN))
    assert PASSWORD not in str(caught.value)
    assert TOKEN not in str(caught.value)


# --- token bucket -------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spaces_requests_and_allows_a_burst_after_idling() -> None:
    clock = FakeClock()
    bucket = TokenBucket(25, burst=3, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    clock.now += 10
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.04])


def test_token_bucket_is_shared_fairly_by_threads() -> None:
    bucket = TokenBucket(200)
    started = time.monotonic()
    def take_ten() -> None:
        for _ in range(10):
            bucket.acquire()

    threads = [threading.Thread(target=take_ten) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 40 acquisitions at 200/s: the first is free, the rest are 5 ms apart.
    assert time.monotonic() - started >= 39 * 0.005 * 0.9


# --- the client against canned answers ----------------------------------------------------------------
Handler = Callable[[dict[str, Any]], httpx.Response]


class FakeNivoda:
    """A MockTransport handler: authenticates, then answers every other operation with `handler`."""

    def __init__(self, handler: Handler, *, expires: object = 3600, auth_delay_s: float = 0.0) -> None:
        self.handler = handler
        self.expires = expires
        self.auth_delay_s = auth_delay_s
        self.auths = 0
        self.operations: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "authenticate" in body["query"]:
            time.sleep(self.auth_delay_s)
            with self._lock:
                self.auths += 1
                token = f"{TOKEN}-{self.auths}"
            if body["variables"]["password"] != PASSWORD:
                return httpx.Response(200, json={"errors": [{"message": "Invalid username or password"}]})
            payload = {"token": token, "expires": self.expires}
            return httpx.Response(200, json={"data": {"authenticate": {"username_and_password": payload}}})
        with self._lock:
            self.operations.append(body)
        return self.handler(body)


def ok(payload: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"data": {"as": payload}})


def make_client(fake: FakeNivoda, *, clock: Callable[[], float] = time.monotonic, password: str = PASSWORD,
                sleeps: list[float] | None = None, staging: bool = False, read_attempts: int = 3,
                limiter: TokenBucket | None = None) -> NivodaClient:
    recorded = sleeps if sleeps is not None else []
    return NivodaClient(
        "https://nivoda.test/api/diamonds", "user", password,
        http=httpx.Client(transport=httpx.MockTransport(fake)), clock=clock, wall_clock=lambda: NOW,
        sleep=recorded.append, limiter=limiter or TokenBucket(10_000, sleep=recorded.append), staging=staging,
        read_attempts=read_attempts,
    )


def test_token_is_cached_and_refreshed_before_expiry_in_seconds_from_now() -> None:
    clock = FakeClock(0.0)
    fake = FakeNivoda(lambda body: ok({"diamonds_by_query_count": 7}), expires=3600)
    client = make_client(fake, clock=clock)
    assert client.count(FeedQuery()) == 7
    clock.now = 3299.0
    client.count(FeedQuery())
    assert fake.auths == 1
    clock.now = 3301.0  # inside the 5-minute margin
    client.count(FeedQuery())
    assert fake.auths == 2
    assert fake.operations[-1]["variables"]["token"] == f"{TOKEN}-2"


def test_reauthenticates_once_then_gives_up_with_feed_auth_error() -> None:
    fake = FakeNivoda(lambda body: httpx.Response(200, json={"errors": [{"message": "Unauthorized"}]}))
    with pytest.raises(FeedAuthError, match="count"):
        make_client(fake).count(FeedQuery())
    assert fake.auths == 2
    assert len(fake.operations) == 2


def test_wrong_password_is_an_auth_error_without_the_password() -> None:
    fake = FakeNivoda(lambda body: ok({}))
    with pytest.raises(FeedAuthError, match="user") as caught:
        make_client(fake, password="not-the-password").count(FeedQuery())
    assert "not-the-password" not in str(caught.value)
    assert fake.auths == 1  # credentials are not retried


def test_concurrent_threads_share_one_refresh(concurrently: Callable[[Callable[[], int], int], list[int]]) -> None:
    fake = FakeNivoda(lambda body: ok({"diamonds_by_query_count": 1}), auth_delay_s=0.2)
    client = make_client(fake)
    assert concurrently(lambda: client.count(FeedQuery()), 8) == [1] * 8
    assert fake.auths == 1
    assert len(fake.operations) == 8


def test_reads_retry_transient_failures_with_backoff_then_give_up() -> None:
    answers = iter([httpx.Response(502, text="<html>bad gateway</html>"), httpx.Response(503, text="")])
    fake = FakeNivoda(lambda body: next(answers, ok({"diamonds_by_query_count": 3})))
    sleeps: list[float] = []
    assert make_client(fake, sleeps=sleeps).count(FeedQuery()) == 3
    assert len(sleeps) == 2

    fake = FakeNivoda(lambda body: httpx.Response(500, text="down"))
    with pytest.raises(FeedTransientError, match="HTTP 500"):
        make_client(fake).count(FeedQuery())
    assert len(fake.operations) == 3


def test_retry_after_is_honoured_but_a_long_one_goes_back_to_the_caller() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "2"})])
    fake = FakeNivoda(lambda body: next(answers, ok({"diamonds_by_query_count": 3})))
    sleeps: list[float] = []
    make_client(fake, sleeps=sleeps).count(FeedQuery())
    # The Retry-After becomes the limiter's pause (for every sharer); the retry waits it out there.
    assert len(fake.operations) == 2
    assert sum(sleeps) >= 2

    fake = FakeNivoda(lambda body: httpx.Response(429, headers={"Retry-After": "600"}))
    with pytest.raises(FeedTransientError) as caught:
        make_client(fake).count(FeedQuery())
    assert caught.value.retry_after == 600
    assert len(fake.operations) == 1


@pytest.fixture
def seeded() -> Iterator[Callable[[int], None]]:
    """`seeded(n)` seeds the module `random` the client draws its jitter from; the state is restored after."""
    state = random.getstate()
    yield random.seed
    random.setstate(state)


def _retry_sleeps(fake: FakeNivoda, attempts: int) -> list[float]:
    """The client's sleeps between `attempts` tries of a read that fails every time (the limiter sleeps apart)."""
    sleeps: list[float] = []
    with pytest.raises(FeedTransientError):
        make_client(fake, sleeps=sleeps, read_attempts=attempts, limiter=TokenBucket(1e9)).count(FeedQuery())
    assert len(fake.operations) == attempts
    return sleeps


def test_backoff_grows_exponentially_to_its_cap_with_jitter_inside_each_bound(
    seeded: Callable[[int], None],
) -> None:
    attempts = 8  # seven pauses: 0.5, 1, 2, 4, then 8 s three times (the cap)
    bases = [min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**n) for n in range(attempts - 1)]
    assert bases == [0.5, 1, 2, 4, 8, 8, 8]
    draws = []
    for seed in (1, 2, 3):
        seeded(seed)
        sleeps = _retry_sleeps(FakeNivoda(lambda body: httpx.Response(503, text="busy")), attempts)
        for attempt, (sleep, base) in enumerate(zip(sleeps, bases, strict=True), start=1):
            assert base / 2 <= sleep <= base, f"pause {attempt} of seed {seed}: {sleep} outside [{base / 2}, {base}]"
        # Full jitter in the upper half: the same seed gives the same draws, computed as the client does.
        replay = random.Random(seed)
        assert sleeps == [replay.uniform(base / 2, base) for base in bases]
        draws.append(sleeps)
    assert draws[0] != draws[1] != draws[2], "the pauses are jittered, not fixed"


def test_a_retry_after_on_a_server_error_is_waited_out_plus_jitter(seeded: Callable[[int], None]) -> None:
    seeded(5)
    sleeps = _retry_sleeps(FakeNivoda(lambda body: httpx.Response(503, headers={"Retry-After": "3"})), 3)
    # Retry-After, plus up to half the exponential step, so that clients told the same moment do not return
    # together.
    assert len(sleeps) == 2
    for sleep, base in zip(sleeps, (0.5, 1.0), strict=True):
        assert 3 < sleep <= 3 + base / 2


def test_a_retry_after_on_a_429_holds_the_shared_limiter_back_and_the_retry_is_jittered(
    seeded: Callable[[int], None],
) -> None:
    seeded(9)
    clock = FakeClock(0.0)
    waits: list[float] = []
    answers = iter([httpx.Response(429, headers={"Retry-After": "4"})])
    fake = FakeNivoda(lambda body: next(answers, ok({"diamonds_by_query_count": 3})))
    sleeps: list[float] = []
    limiter = TokenBucket(1e9, clock=clock, sleep=waits.append)
    assert make_client(fake, sleeps=sleeps, limiter=limiter).count(FeedQuery()) == 3
    assert len(fake.operations) == 2
    [jitter] = sleeps
    assert 0 < jitter <= 0.05
    assert max(waits) == pytest.approx(4.0), "the retry waited the Retry-After at the limiter, which all sharers use"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400, json={"errors": [{"message": "Expected type Int, found 1.5"}]}),
        httpx.Response(200, json={"errors": [{"message": 'Cannot query field "carat" on type "Certificate".',
                                              "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}),
        httpx.Response(403, json={"errors": [{"message": "API Pro required"}]}),
    ],
    ids=["http-400", "graphql-validation", "http-403"],
)
def test_a_permanent_error_reaches_the_server_exactly_once(answer: httpx.Response) -> None:
    calls: list[Callable[[NivodaClient], object]] = [
        lambda c: c.count(FeedQuery()), lambda c: c.page(FeedQuery(), 0, 50), lambda c: c.hold("s1"),
        lambda c: c.order("offer-1"),
    ]
    for call in calls:
        fake = FakeNivoda(lambda body: answer)
        sleeps: list[float] = []
        with pytest.raises(FeedPermanentError):
            call(make_client(fake, sleeps=sleeps, limiter=TokenBucket(1e9)))
        assert len(fake.operations) == 1, "a permanent error is not retried"
        assert sleeps == []


def test_transport_failures_become_transient_errors() -> None:
    def refuse(body: dict[str, Any]) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    fake = FakeNivoda(refuse)
    with pytest.raises(FeedTransientError, match="ReadTimeout"):
        make_client(fake).page(FeedQuery(), 0, 50)
    assert len(fake.operations) == 3


def test_an_order_is_never_resent_once_it_may_have_reached_the_server() -> None:
    def flaky(body: dict[str, Any]) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    for handler in (lambda body: httpx.Response(500, text="oops"), flaky):
        fake = FakeNivoda(handler)
        with pytest.raises(FeedTransientError, match="may have been processed"):
            make_client(fake).order("offer-1", reference="PO-1")
        assert len(fake.operations) == 1


def test_a_rate_limited_mutation_is_retried() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "0"})])
    fake = FakeNivoda(lambda body: next(answers, ok({"create_order": "order-9"})))
    assert make_client(fake).order("offer-1", comment="c") == "order-9"
    assert len(fake.operations) == 2
    assert fake.operations[-1]["variables"]["items"] == [{"offerId": "offer-1", "customer_comment": "c"}]


def test_hold_results() -> None:
    held = {"id": "h1", "denied": False, "until": "2026-01-02T00:00:00Z"}
    fake = FakeNivoda(lambda body: ok({"create_hold": held}))
    assert make_client(fake).hold("s1") == HoldResult("h1", False, datetime(2026, 1, 2, tzinfo=UTC))
    fake = FakeNivoda(lambda body: ok({"create_hold": {"id": None, "denied": True, "until": None}}))
    result = make_client(fake).hold("s1")
    assert result.denied
    assert result.hold_id is None
    assert result.reason


def test_order_tolerates_an_object_answer() -> None:
    fake = FakeNivoda(lambda body: ok({"create_order": {"id": 42}}))
    assert make_client(fake).order("offer-1") == "42"


def test_secrets_stay_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([
        httpx.Response(500, text=f"echo {TOKEN}-1"),
        httpx.Response(200, json={"errors": [{"message": "Unauthenticated"}]}),
    ])
    fake = FakeNivoda(lambda body: next(answers, ok({"diamonds_by_query_count": 1})))
    with caplog.at_level(logging.DEBUG, logger="opus.feeds"):
        make_client(fake).count(FeedQuery())
    assert fake.auths == 2
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert PASSWORD not in text
        assert TOKEN not in text



def test_from_settings_builds_a_client_without_touching_the_network() -> None:
    from opus.config import load_settings

    settings = load_settings(nivoda_endpoint="http://127.0.0.1:9/api/diamonds", nivoda_rate_limit_per_s=5)
    with NivodaClient.from_settings(settings) as client:
        feed: Feed = client  # mypy checks the Feed protocol here
        assert feed.name == "nivoda"


def test_null_items_are_dropped_and_other_junk_is_refused() -> None:
    fake = FakeNivoda(lambda body: ok({"diamonds_by_query": {"items": [{"id": "a"}, None], "total_count": 9}}))
    assert make_client(fake).page(FeedQuery(), 0, 50) == [{"id": "a"}]
    fake = FakeNivoda(lambda body: ok({"diamonds_by_query": {"items": ["a"]}}))
    with pytest.raises(FeedPermanentError, match="items"):
        make_client(fake).page(FeedQuery(), 0, 50)
