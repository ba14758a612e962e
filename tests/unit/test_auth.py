"""Credentials with plain values: key format and digests, scopes, HMAC signatures, rate limits, cursors."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opus.api.cursor import Cursor, decode_cursor, encode_cursor
from opus.api.errors import ApiError
from opus.api.ratelimit import RateLimiter
from opus.domain import auth
from opus.domain.auth import Scope

PREFIX = "ab12cd34"
SECRET = "A" * 20 + "_-" + "z9" * 10  # 42 URL-safe characters, with the separator inside the secret

NONCE = "f3c1d2e4b5a69788"


def test_a_key_round_trips_through_format_and_parse() -> None:
    key = auth.format_key(PREFIX, SECRET)
    assert key == f"opus_{PREFIX}_{SECRET}"
    assert auth.parse_key(key) == auth.ParsedKey(PREFIX, SECRET)


@pytest.mark.parametrize(
    "key",
    [
        "", "opus", "opus__" + SECRET, f"key_{PREFIX}_{SECRET}", f"opus_{PREFIX}_short",
        f"opus_AB12CD34_{SECRET}", f"opus_ab12cd3_{SECRET}", f"opus_{PREFIX}_{SECRET}!", f"opus_{PREFIX}{SECRET}",
    ],
)
def test_malformed_keys_do_not_parse(key: str) -> None:
    assert auth.parse_key(key) is None


def test_format_key_refuses_bad_parts() -> None:
    with pytest.raises(ValueError, match="prefix"):
        auth.format_key("UPPER123", SECRET)
    with pytest.raises(ValueError, match="secret"):
        auth.format_key(PREFIX, "too-short")


def test_only_the_sha256_digest_identifies_a_key() -> None:
    key = auth.format_key(PREFIX, SECRET)
    digest = auth.key_digest(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert auth.key_matches(key, digest)
    assert not auth.key_matches(key + "x", digest)
    assert not auth.key_matches(key, "0" * 64)


def test_scopes_are_ordered_read_trade_admin() -> None:
    assert Scope.ADMIN.allows(Scope.TRADE)
    assert Scope.ADMIN.allows(Scope.READ)
    assert Scope.TRADE.allows(Scope.READ)
    assert Scope.TRADE.allows(Scope.TRADE)
    assert not Scope.TRADE.allows(Scope.ADMIN)
    assert not Scope.READ.allows(Scope.TRADE)


def test_signature_is_hmac_sha256_over_the_documented_canonical_string() -> None:
    body = b'{"type": "full"}'
    nonce = "0123456789abcdef0123"
    expected_message = (f"POST\n/api/v2/triggers/run?x=1\n1700000000\n{nonce}\n" + hashlib.sha256(body).hexdigest())
    expected = hmac.new(b"s3cret", expected_message.encode(), hashlib.sha256).hexdigest()
    assert auth.sign_request("s3cret", "post", "/api/v2/triggers/run?x=1", 1700000000, body, nonce=nonce) == expected
    assert auth.signature_matches("s3cret", "POST", "/api/v2/triggers/run?x=1", "1700000000", body, expected,
                                  nonce=nonce)
    # The documentation says lowercase hex, so that is all the check accepts.
    for spelled in (expected.upper(), f" {expected}", expected[:-1]):
        assert not auth.signature_matches("s3cret", "POST", "/api/v2/triggers/run?x=1", "1700000000", body,
                                          spelled, nonce=nonce)


def test_nonces_are_16_to_128_url_safe_characters() -> None:
    assert auth.nonce_valid("a" * 16)
    assert auth.nonce_valid("A-_9" * 32)
    for bad in ("", "a" * 15, "a" * 129, "has space 123456", "ünïcödé-1234567"):
        assert not auth.nonce_valid(bad)


@pytest.mark.parametrize(
    ("method", "path", "timestamp", "body", "secret", "nonce"),
    [
        ("GET", "/api/v2/triggers/run?x=1", "1700000000", b'{"type": "full"}', "s3cret", NONCE),
        ("POST", "/api/v2/triggers/run?x=2", "1700000000", b'{"type": "full"}', "s3cret", NONCE),
        ("POST", "/api/v2/triggers/run", "1700000000", b'{"type": "full"}', "s3cret", NONCE),
        ("POST", "/api/v2/triggers/run?x=1", "1700000001", b'{"type": "full"}', "s3cret", NONCE),
        ("POST", "/api/v2/triggers/run?x=1", "1700000000", b'{"type": "incremental"}', "s3cret", NONCE),
        ("POST", "/api/v2/triggers/run?x=1", "1700000000", b'{"type": "full"}', "other", NONCE),
        ("POST", "/api/v2/triggers/run?x=1", "1700000000", b'{"type": "full"}', "s3cret", NONCE + "x"),
    ],
)
def test_any_change_to_the_signed_parts_breaks_the_signature(
    method: str, path: str, timestamp: str, body: bytes, secret: str, nonce: str
) -> None:
    good = auth.sign_request("s3cret", "POST", "/api/v2/triggers/run?x=1", 1700000000, b'{"type": "full"}',
                             nonce=NONCE)
    assert not auth.signature_matches(secret, method, path, timestamp, body, good, nonce=nonce)


def test_timestamps_are_plain_unix_seconds_within_the_window() -> None:
    assert auth.parse_timestamp("1700000000") == 1700000000
    for bad in ("", "-5", "1.5", "17e8", "abc", "١٢٣", "9" * 13):
        assert auth.parse_timestamp(bad) is None
    assert auth.timestamp_fresh(1000, 1000 + 300)
    assert auth.timestamp_fresh(1000, 1000 - 300)
    assert not auth.timestamp_fresh(1000, 1000 + 301)
    assert not auth.timestamp_fresh(1000, 1000 - 301)


def test_find_secret_knows_only_configured_clients() -> None:
    secrets = {"alpha": "a-secret", "beta": "b-secret"}
    assert auth.find_secret(secrets, "beta") == "b-secret"
    assert auth.find_secret(secrets, "gamma") is None
    assert auth.find_secret(secrets, "") is None


@given(st.binary(max_size=200), st.text(max_size=40))
def test_a_signature_always_verifies_against_itself(body: bytes, query: str) -> None:
    path = "/api/v2/diamonds" + (f"?{query}" if query else "")
    signature = auth.sign_request("k", "GET", path, 5, body, nonce=NONCE)
    assert auth.signature_matches("k", "GET", path, "5", body, signature, nonce=NONCE)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_refuses_with_a_retry_after() -> None:
    clock = FakeTime()
    limiter = RateLimiter(3, clock)
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.check("a")
    assert not refused.allowed
    assert refused.retry_after_s == 20  # 3 a minute: one token every 20 s
    assert limiter.check("b").allowed, "credentials have separate buckets"
    clock.now += 20
    assert limiter.check("a").allowed
    assert not limiter.check("a").allowed


def test_rate_limiter_refills_to_the_burst_size_only() -> None:
    clock = FakeTime()
    limiter = RateLimiter(2, clock)
    limiter.check("a")
    clock.now += 3600
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, False]


KEY = b"k" * 32


def test_a_cursor_round_trips() -> None:
    cursor = Cursor("price", "asc", "1234.50", 42)
    assert decode_cursor(KEY, encode_cursor(KEY, cursor), sort="price", order="asc") == cursor


def test_a_tampered_forged_or_foreign_cursor_is_refused() -> None:
    text = encode_cursor(KEY, Cursor("price", "asc", "1234.50", 42))
    body, _, mac = text.partition(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (flipped + "." + mac, body, body + ".", "garbage", "é", text + "x", "a.b.c"):
        with pytest.raises(ApiError) as info:
            decode_cursor(KEY, bad, sort="price", order="asc")
        assert info.value.status == 400
    with pytest.raises(ApiError):
        decode_cursor(b"other-key", text, sort="price", order="asc")
    with pytest.raises(ApiError, match="another sort"):
        decode_cursor(KEY, text, sort="carats", order="asc")
    with pytest.raises(ApiError, match="another sort"):
        decode_cursor(KEY, text, sort="price", order="desc")
