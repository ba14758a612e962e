"""Fault injection: the failures nivoda-api.md says production shows, and the ones a broken upstream sends.

Each request-level fault kind has a rate (a seeded draw per request, so a failing test can be replayed)
and a schedule (`every_<kind>`: every Nth request); `fail_next` is a queue of exact outcomes, HTTP
statuses or kind names, for tests that need a precise sequence. Record-level faults are applied to the response
body after GraphQL execution, by `opus.sandbox.malform`: `malformed` at a seeded rate per record (a retry may
heal), `malformed_stones` to the named stones on every fetch (a supplier whose record stays broken).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opus.sandbox.malform import MALFORM_KINDS

STATUS_KINDS = {"429": 429, "500": 500, "502": 502, "503": 503}
# drop: close the connection without an answer; slow: add `slow_ms`; graphql_error: HTTP 200 with errors[];
# truncate: cut the JSON body short
REQUEST_KINDS = (*STATUS_KINDS, "drop", "slow", "graphql_error", "truncate")
_SCALARS: dict[str, tuple[type, float | None, float | None]] = {
    # name: (type, minimum, maximum)
    "latency_ms": (int, 0, None), "slow_ms": (int, 0, None), "retry_after_s": (int, 0, None),
    "short_page_rate": (float, 0.0, 1.0), "rows_past_count": (float, 0.0, 0.9),
    "token_max_requests": (int, 1, None), "token_max_age_s": (float, 0.0, None),
}


@dataclass
class FaultSettings:
    rates: dict[str, float] = field(default_factory=dict)
    every: dict[str, int] = field(default_factory=dict)
    fail_next: list[int | str] = field(default_factory=list)
    latency_ms: int = 0
    slow_ms: int = 5_000
    retry_after_s: int = 1
    short_page_rate: float = 0.0
    rows_past_count: float = 0.0  # a further fraction of stones that counts leave out (pitfall 3)
    malformed: dict[str, float] = field(default_factory=dict)
    malformed_stones: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind: stone ids, every fetch
    token_max_requests: int | None = None  # a token stops working after this many requests ...
    token_max_age_s: float | None = None  # ... or this many seconds, well before its `expires`

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"rate_{k}": self.rates.get(k, 0.0) for k in REQUEST_KINDS}
        out |= {f"every_{k}": self.every.get(k) for k in REQUEST_KINDS}
        out |= {name: getattr(self, name) for name in _SCALARS}
        out |= {"fail_next": list(self.fail_next), "malformed": dict(self.malformed),
                "malformed_stones": {k: list(v) for k, v in self.malformed_stones.items()}}
        return out


@dataclass(frozen=True)
class RequestFault:
    """What happens to one request; several may apply (a slow answer can also be truncated)."""

    status: int | None = None
    drop: bool = False
    slow: bool = False
    graphql_error: bool = False
    truncate: bool = False


def parse_settings(body: Mapping[str, Any]) -> tuple[FaultSettings, int | None]:
    """The settings an admin body (or keyword arguments) describes, and a new seed if given."""
    s = FaultSettings()
    seed = None
    for name, value in body.items():
        if value is None:
            continue
        if name == "seed":
            seed = _int(name, value, None, None)
        elif name.startswith("rate_") and name[5:] in REQUEST_KINDS:
            s.rates[name[5:]] = _float(name, value, 0.0, 1.0)
        elif name.startswith("every_") and name[6:] in REQUEST_KINDS:
            s.every[name[6:]] = _int(name, value, 1, None)
        elif name == "fail_next":
            s.fail_next = _fail_next(value)
        elif name == "malformed":
            s.malformed = _malformed(value)
        elif name == "malformed_stones":
            s.malformed_stones = _malformed_stones(value)
        elif name in _SCALARS:
            kind, lo, hi = _SCALARS[name]
            setattr(s, name, _int(name, value, lo, hi) if kind is int else _float(name, value, lo, hi))
        else:
            raise ValueError(f"unknown fault setting: {name}")
    return s, seed


def _float(name: str, value: Any, lo: float | None, hi: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bounds}")
    return float(value)


def _int(name: str, value: Any, lo: float | None, hi: float | None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return int(_float(name, value, lo, hi))


def _fail_next(value: Any) -> list[int | str]:
    if not isinstance(value, list):
        raise ValueError("fail_next must be a list")
    out: list[int | str] = []
    for entry in value:
        if isinstance(entry, int) and not isinstance(entry, bool) and 400 <= entry <= 599:
            out.append(entry)
        elif isinstance(entry, str) and entry in REQUEST_KINDS:
            out.append(STATUS_KINDS.get(entry, entry))
        else:
            raise ValueError(f"fail_next must list HTTP error statuses (400-599) or kinds ({', '.join(REQUEST_KINDS)})")
    return out


def _malformed(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError("malformed must be an object of kind: rate")
    _known_kinds(value, "malformed")
    return {k: _float(f"malformed.{k}", v, 0.0, 1.0) for k, v in value.items()}


def _malformed_stones(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ValueError("malformed_stones must be an object of kind: [stone id, ...]")
    _known_kinds(value, "malformed_stones")
    out = {}
    for kind, ids in value.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError(f"malformed_stones.{kind} must be a list of stone ids")
        out[kind] = tuple(ids)
    return out


def _known_kinds(value: Mapping[str, Any], name: str) -> None:
    unknown = set(value) - set(MALFORM_KINDS)
    if unknown:
        raise ValueError(f"unknown {name} kind(s): {', '.join(sorted(unknown))}; known: {', '.join(MALFORM_KINDS)}")


def _outcome(entry: int | str) -> RequestFault:
    if isinstance(entry, int):
        return RequestFault(status=entry)
    return RequestFault(drop=entry == "drop", slow=entry == "slow", graphql_error=entry == "graphql_error",
                        truncate=entry == "truncate")


class Faults:
    """Thread-safe fault state shared by the HTTP layer, the resolvers and the token store."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._settings = FaultSettings()
        self._requests = 0

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, **body: Any) -> dict[str, Any]:
        """Replace the whole configuration (omitted settings go back to "no fault"); returns it."""
        return self.configure_from(body)

    def configure_from(self, body: Mapping[str, Any]) -> dict[str, Any]:
        settings, seed = parse_settings(body)
        with self._lock:
            self._settings = settings
            self._requests = 0  # schedules count from the moment they are set
            if seed is not None:
                self._rng.seed(seed)
            return settings.as_json()

    def reset(self) -> None:
        self.configure()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._settings.as_json()

    def decide(self) -> RequestFault:
        """The faults to apply to this request: `fail_next` first, then schedules, then rates."""
        with self._lock:
            s = self._settings
            self._requests += 1
            if s.fail_next:
                return _outcome(s.fail_next.pop(0))
            hit = {k for k, n in s.every.items() if self._requests % n == 0}
            hit |= {k for k in REQUEST_KINDS if s.rates.get(k) and self._rng.random() < s.rates[k]}
        status = next((STATUS_KINDS[k] for k in STATUS_KINDS if k in hit), None)
        return RequestFault(status=status, drop="drop" in hit, slow="slow" in hit,
                            graphql_error="graphql_error" in hit, truncate="truncate" in hit)

    def latency_s(self) -> float:
        return self._settings.latency_ms / 1000

    def slow_s(self) -> float:
        return self._settings.slow_ms / 1000

    def retry_after_s(self) -> int:
        return self._settings.retry_after_s

    def malform_rng(self) -> random.Random | None:
        """A generator for this response's record faults (drawn from the seeded stream), or None."""
        with self._lock:
            if not any(self._settings.malformed.values()):
                return None
            return random.Random(self._rng.getrandbits(64))

    def page_length(self, full: int, more_after: bool) -> int:
        """How many of a `full`-item page to return. A short page is only served mid-range and never
        empty (an empty page means "end of range"), and it only truncates: the next offset, advanced
        by what the client received, starts at the first item withheld, so nothing is skipped."""
        with self._lock:
            rate = self._settings.short_page_rate
            if not rate or full < 2 or not more_after or self._rng.random() >= rate:
                return full
            return self._rng.randint(1, full - 1)
