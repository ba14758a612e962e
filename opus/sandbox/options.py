"""`opus sandbox` flags -> a `SandboxConfig`: the preset first, then each flag given, on top of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from opus.sandbox.config import Latency, SandboxConfig
from opus.sandbox.faults import REQUEST_KINDS, parse_settings


def _pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """KIND=VALUE strings as a mapping; a malformed one is refused naming the flag."""
    out = {}
    for value in values:
        kind, sep, number = value.partition("=")
        if not sep or not kind.strip() or not number.strip():
            raise ValueError(f"{flag} takes KIND=VALUE, got {value!r}")
        out[kind.strip()] = number.strip()
    return out


def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{flag}: not a number: {text!r}") from None


def fault_flags(rates: Iterable[str] = (), every: Iterable[str] = (), malformed: Iterable[str] = (),
                fail_next: str | None = None, *, malformed_stones: Iterable[str] = (),
                **scalars: float | None) -> dict[str, Any]:
    """The admin-shaped fault configuration the fault flags describe (only what was given).
    `malformed_stones` takes KIND=ID[,ID...], and a kind given twice gathers its ids."""
    out: dict[str, Any] = {}
    for kind, value in _pairs(rates, "--fault").items():
        if kind not in REQUEST_KINDS:
            raise ValueError(f"--fault: unknown kind {kind!r}; known: {', '.join(REQUEST_KINDS)}")
        out[f"rate_{kind}"] = _number(value, "--fault")
    for kind, value in _pairs(every, "--fault-every").items():
        if kind not in REQUEST_KINDS:
            raise ValueError(f"--fault-every: unknown kind {kind!r}; known: {', '.join(REQUEST_KINDS)}")
        out[f"every_{kind}"] = int(_number(value, "--fault-every"))
    if malformed:
        out["malformed"] = {k: _number(v, "--malformed") for k, v in _pairs(malformed, "--malformed").items()}
    stones: dict[str, list[str]] = {}
    for value in malformed_stones:
        kind, ids = next(iter(_pairs([value], "--malformed-stone").items()))
        stones.setdefault(kind, []).extend(i.strip() for i in ids.split(",") if i.strip())
    if stones:
        out["malformed_stones"] = stones
    if fail_next:
        out["fail_next"] = [int(e) if e.strip().isdigit() else e.strip() for e in fail_next.split(",")]
    out |= {name: value for name, value in scalars.items() if value is not None}
    parse_settings(out)  # refuse a bad value now, with its name, rather than at the first request
    return out


def build_config(production_like: bool = False, realistic: bool | None = None,
                 behaviour: Mapping[str, Any] | None = None, latency: Mapping[str, float | None] | None = None,
                 faults: Mapping[str, Any] | None = None) -> SandboxConfig:
    """The preset (or the faithful default), then the given behaviour, latency and fault settings."""
    config = SandboxConfig.production_like() if production_like else SandboxConfig()
    if realistic is not None:
        config = replace(config, realistic=realistic)
    given = {k: v for k, v in (behaviour or {}).items() if v is not None}
    if given.get("throttle_rps") == 0:  # 0 turns a preset's throttle off
        given["throttle_rps"] = None
    if given:
        config = config.with_behaviour(**given)
    latency_given = {k: v for k, v in (latency or {}).items() if v is not None}
    if latency_given:
        config = config.with_behaviour(latency=replace(config.behaviour.latency or Latency(), **latency_given))
    if faults:
        config = replace(config, faults={**config.faults, **faults})
    return config
