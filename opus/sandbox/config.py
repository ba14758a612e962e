"""What the sandbox does beyond answering faithfully: each behaviour off unless asked for.

`SandboxConfig` is the whole start-up configuration (flags of `opus sandbox`, or `run_sandbox(config=...)`).
`Behaviour` is the part that can also change while serving (`POST /admin/config`); `faults` is the
initial fault configuration in the shape `POST /admin/faults` takes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Latency:
    """Per-request latency, log-normal around `median_ms`, never above `cap_ms`.

    sigma 0.8 puts the 99th percentile near six times the median, the shape production's
    "usually a second or two, sometimes up to 45 s" describes; sigma 0 makes every request take the median."""

    median_ms: float = 1500.0
    sigma: float = 0.8
    cap_ms: float = 45_000.0

    def __post_init__(self) -> None:
        if self.median_ms < 0 or self.sigma < 0 or self.cap_ms < 0:
            raise ValueError("latency median_ms, sigma and cap_ms must be >= 0")


@dataclass(frozen=True)
class Behaviour:
    count_noise: bool = False  # diamonds_by_query_count undercounts per price bucket (pitfall 4)
    latency: Latency | None = None
    throttle_rps: float | None = None  # 429 above this many requests in any one second, all clients together
    staging: bool = False  # reject the fields staging rejects (pitfall 6)
    hold_expiry: bool = False  # a hold lapses at its `until`, judged by the inventory's clock
    no_hold_suppliers: float = 0.0  # fraction of suppliers that deny every hold

    def __post_init__(self) -> None:
        if self.throttle_rps is not None and self.throttle_rps <= 0:
            raise ValueError("throttle_rps must be > 0")
        if not 0.0 <= self.no_hold_suppliers <= 1.0:
            raise ValueError("no_hold_suppliers must be between 0 and 1")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# Production-like faults: a few short pages and the odd gateway error, never enough to stop a run.
PRODUCTION_FAULTS: dict[str, Any] = {"short_page_rate": 0.02, "rate_502": 0.002, "rate_503": 0.002}


@dataclass(frozen=True)
class SandboxConfig:
    realistic: bool = False  # market-shaped prices, availability and media (a generation option)
    behaviour: Behaviour = field(default_factory=Behaviour)
    faults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def production_like(cls) -> SandboxConfig:
        """The realistic set together: market inventory, noisy counts, latency, throttling, hold rules."""
        behaviour = Behaviour(count_noise=True, latency=Latency(), throttle_rps=30.0, hold_expiry=True,
                              no_hold_suppliers=0.1)
        return cls(realistic=True, behaviour=behaviour, faults=dict(PRODUCTION_FAULTS))

    def with_behaviour(self, **changes: Any) -> SandboxConfig:
        return replace(self, behaviour=replace(self.behaviour, **changes))


def behaviour_from_json(current: Behaviour, body: Mapping[str, Any]) -> Behaviour:
    """`current` with the fields `body` names changed; unknown names and wrong types are refused."""
    known = set(Behaviour.__dataclass_fields__)
    unknown = set(body) - known
    if unknown:
        raise ValueError(f"unknown behaviour setting(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {}
    for name in ("count_noise", "staging", "hold_expiry"):
        if name in body:
            changes[name] = _typed(body, name, bool)
    if "throttle_rps" in body:
        changes["throttle_rps"] = None if body["throttle_rps"] is None else float(_number(body, "throttle_rps"))
    if "no_hold_suppliers" in body:
        changes["no_hold_suppliers"] = float(_number(body, "no_hold_suppliers"))
    if "latency" in body:
        changes["latency"] = _latency(body["latency"])
    return replace(current, **changes)


def _latency(value: Any) -> Latency | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("latency must be an object {median_ms, sigma, cap_ms} or null")
    unknown = set(value) - set(Latency.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown latency setting(s): {', '.join(sorted(unknown))}")
    return Latency(**{k: float(_number(value, k)) for k in value})


def _typed(body: Mapping[str, Any], name: str, kind: type) -> Any:
    value = body[name]
    if not isinstance(value, kind):
        raise ValueError(f"{name} has the wrong type")
    return value


def _number(body: Mapping[str, Any], name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


class LiveBehaviour:
    """The behaviour in force, replaced whole so a request never sees half an update."""

    def __init__(self, initial: Behaviour) -> None:
        self._lock = threading.Lock()
        self._current = initial

    @property
    def current(self) -> Behaviour:
        return self._current

    def update(self, body: Mapping[str, Any]) -> Behaviour:
        with self._lock:
            self._current = behaviour_from_json(self._current, body)
            return self._current

    def reset(self) -> Behaviour:
        with self._lock:
            self._current = Behaviour()
            return self._current
