"""Feeds as configuration: the `FEEDS_FILE` (TOML or JSON) read into `FeedConfig`s, every key checked.

A feed is a named slice of the Nivoda inventory, its `query` the DiamondQuery filters of nivoda-api.md. The
run owns `updated` and `ids` and the partitions own the price-per-carat range within the feed's own
`dollar_per_carat` bounds, so a file naming `updated` or `ids` is refused rather than silently overridden.

    [feeds.nivoda-natural]
    enabled = true
    query = { labgrown = false, availability = ["AVAILABLE"] }

No file: the one feed `nivoda` with no filters.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from opus.domain.models import FeedConfig

DEFAULT_FEED: Final = FeedConfig("nivoda", {}, True)
FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RUN_OWNED: Final = frozenset({"updated", "ids"})
_FEED_KEYS: Final = frozenset({"enabled", "query"})


class FeedsFileError(ValueError):
    """The feeds file cannot be used; the message names the file and the bad key."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boolean(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _strings(value: object) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
    return None if ok else "must be a non-empty list of strings"


def _integers(value: object) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return None if ok else "must be a non-empty list of integers"


def _range(*, whole: bool) -> Callable[[object], str | None]:
    kind = "whole numbers" if whole else "numbers"

    def check(value: object) -> str | None:
        if not isinstance(value, Mapping) or not value or set(value) - {"from", "to"}:
            return f"must be a table with `from` and/or `to` ({kind})"
        bounds = [value[k] for k in ("from", "to") if k in value]
        if not all(_is_number(b) and (not whole or float(b).is_integer()) for b in bounds):
            return f"`from` and `to` must be {kind}"
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            return "`from` must not exceed `to`"
        return None

    return check


def _ranges(value: object) -> str | None:
    """`sizes`: one range or a list of them (GraphQL coerces one object to a list)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return "must be a range or a non-empty list of ranges"
    for item in items:
        problem = _range(whole=False)(item)
        if problem:
            return problem
    return None


# The DiamondQuery filters of nivoda-api.md, each with the check of its shape.
FILTERS: Final[Mapping[str, Callable[[object], str | None]]] = {
    **dict.fromkeys(("labgrown", "has_image", "has_video", "has_v360", "excludeFairPoorCuts", "hide_memo"), _boolean),
    **dict.fromkeys(("shapes", "color", "clarity", "cut", "polish", "symmetry", "flouresence", "availability",
                     "certificate_lab", "certificate_numbers"), _strings),
    "luster": _integers,
    **dict.fromkeys(("dollar_value", "dollar_per_carat"), _range(whole=True)),
    **dict.fromkeys(("table_percentage", "depth_percentage", "ratio", "length_mm", "width_mm", "depth_mm"),
                    _range(whole=False)),
    "sizes": _ranges,
}


def load_feeds(path: Path | None) -> tuple[FeedConfig, ...]:
    """Every feed of the file (enabled or not), in file order; no file: the default feed. FeedsFileError."""
    if path is None:
        return (DEFAULT_FEED,)
    document = _read(path)
    feeds = document.get("feeds")
    if set(document) - {"feeds"}:
        raise FeedsFileError(f"{path}: unknown top-level key {sorted(set(document) - {'feeds'})[0]!r}")
    if not isinstance(feeds, Mapping) or not feeds:
        raise FeedsFileError(f"{path}: `feeds` must be a table of one or more feeds")
    parsed = tuple(_feed(path, name, body) for name, body in feeds.items())
    if not any(f.enabled for f in parsed):
        raise FeedsFileError(f"{path}: no feed is enabled")
    return parsed


def parse_query(name: str, query: object, *, where: str = "") -> dict[str, Any]:
    """A feed's filters, checked key by key; FeedsFileError naming the first bad one."""
    prefix = f"{where}feed {name!r}"
    if not isinstance(query, Mapping):
        raise FeedsFileError(f"{prefix}: `query` must be a table of DiamondQuery filters")
    for key, value in query.items():
        if key in RUN_OWNED:
            raise FeedsFileError(f"{prefix}: filter {key!r} is set by each run, not by the feed")
        check = FILTERS.get(key)
        if check is None:
            raise FeedsFileError(f"{prefix}: unknown filter {key!r} (known: {', '.join(sorted(FILTERS))})")
        problem = check(value)
        if problem:
            raise FeedsFileError(f"{prefix}: filter {key!r} {problem}")
    copied: dict[str, Any] = json.loads(json.dumps(dict(query)))  # plain, JSON-safe: stored with each run
    return copied


def _feed(path: Path, name: object, body: object) -> FeedConfig:
    where = f"{path}: "
    if not isinstance(name, str) or not FEED_NAME.match(name):
        raise FeedsFileError(f"{where}feed name {name!r} must be lower case letters, digits, '-' or '_'")
    if not isinstance(body, Mapping):
        raise FeedsFileError(f"{where}feed {name!r} must be a table")
    unknown = sorted(set(body) - _FEED_KEYS)
    if unknown:
        raise FeedsFileError(f"{where}feed {name!r}: unknown key {unknown[0]!r} (known: enabled, query)")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FeedsFileError(f"{where}feed {name!r}: key 'enabled' must be true or false")
    return FeedConfig(name, parse_query(name, body.get("query", {}), where=where), enabled)


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeedsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FeedsFileError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") \
            from None
    if not isinstance(document, dict):
        raise FeedsFileError(f"{path}: must hold a table `feeds`")
    return document


def enabled_feeds(feeds: tuple[FeedConfig, ...]) -> tuple[FeedConfig, ...]:
    return tuple(f for f in feeds if f.enabled)


def find_feed(feeds: tuple[FeedConfig, ...], name: str) -> FeedConfig:
    """The feed of that name (enabled or not: an operator may run a disabled feed by name); KeyError."""
    for feed in feeds:
        if feed.name == name:
            return feed
    raise KeyError(f"no feed named {name!r}; configured: {', '.join(f.name for f in feeds)}")


def default_feed(feeds: tuple[FeedConfig, ...]) -> FeedConfig:
    """The feed a caller that names none means: the first enabled one (with no file, the only one)."""
    return enabled_feeds(feeds)[0]
