"""Record-level faults, applied to a response body after GraphQL execution, as a broken upstream sends them.

Every documented kind of messiness (nivoda-api.md, pitfall 7) plus records no schema would let through:
a null `diamond.id`, a price that is not a number, an object where a string belongs. Only fields the
query selected are touched, so a malformed record never carries a field the client did not ask for.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

Record = dict[str, Any]


def _diamond(item: Record) -> Record:
    value = item.get("diamond")
    return value if isinstance(value, dict) else {}


def _certificate(item: Record) -> Record:
    value = _diamond(item).get("certificate")
    return value if isinstance(value, dict) else {}


def _set_if_selected(record: Record, name: str, value: Any) -> bool:
    if name not in record:
        return False
    record[name] = value
    return True


def _null_id(item: Record) -> bool:
    return _set_if_selected(_diamond(item), "id", None)


def _price_not_number(item: Record) -> bool:
    return any(_set_if_selected(item, name, "n/a") for name in ("price", "markup_price", "diamond_price"))


def _wrong_type(item: Record) -> bool:
    cert, diamond = _certificate(item), _diamond(item)
    for record, name in ((cert, "shape"), (cert, "color"), (cert, "lab"), (diamond, "availability")):
        if isinstance(record.get(name), str):
            record[name] = {"value": record[name]}
            return True
    return False


def _eye_clean_text(item: Record) -> bool:
    return _set_if_selected(_diamond(item), "eyeClean", "100%")


def _fancy_without_color(item: Record) -> bool:
    cert = _certificate(item)
    if "color" not in cert:
        return False
    cert["color"] = "Fancy"
    for name in ("f_color", "f_intensity", "f_overtone"):
        _set_if_selected(cert, name, None)
    return True


def _flo_abbreviation(item: Record) -> bool:
    return _set_if_selected(_certificate(item), "floInt", "VSL")


def _labgrown_null(item: Record) -> bool:
    return _set_if_selected(_certificate(item), "labgrown", None)


def _image_on_certificate_only(item: Record) -> bool:
    diamond, cert = _diamond(item), _certificate(item)
    if "image" not in diamond:
        return False
    url = diamond["image"] or cert.get("image")
    diamond["image"] = None
    _set_if_selected(cert, "image", url or "https://media.sandbox.invalid/certificate-image.jpg")
    return True


def _video_fallback_only(item: Record) -> bool:
    """Neither video nor diamond.v360: only certificate.v360 or supplier_video_link remain."""
    diamond = _diamond(item)
    changed = _set_if_selected(diamond, "video", None)
    return _set_if_selected(diamond, "v360", None) or changed


def _nul_in_text(item: Record) -> bool:
    """A NUL character in a string (sent as `\\u0000`): valid JSON, but not storable in PostgreSQL's jsonb."""
    cert = _certificate(item)
    for name in ("lab", "shape", "color"):
        if isinstance(cert.get(name), str):
            cert[name] += "\x00"
            return True
    return False


MALFORM_KINDS: dict[str, Callable[[Record], bool]] = {
    "null_id": _null_id,
    "price_not_number": _price_not_number,
    "wrong_type": _wrong_type,
    "eye_clean_text": _eye_clean_text,
    "fancy_without_color": _fancy_without_color,
    "flo_abbreviation": _flo_abbreviation,
    "labgrown_null": _labgrown_null,
    "image_on_certificate_only": _image_on_certificate_only,
    "video_fallback_only": _video_fallback_only,
    "nul_in_text": _nul_in_text,
}


def _items(node: Any) -> Iterator[Record]:
    """Every item in a response: a dict that carries a `diamond` object, wherever (and under any alias) it is."""
    if isinstance(node, dict):
        if isinstance(node.get("diamond"), dict):
            yield node
            return
        for value in node.values():
            yield from _items(value)
    elif isinstance(node, list):
        for value in node:
            yield from _items(value)


def malform(body: dict[str, Any], rates: dict[str, float], rng: random.Random) -> dict[str, int]:
    """Damage the items of `body` in place, each kind at its rate; returns how many of each were damaged."""
    damaged = dict.fromkeys(rates, 0)
    for item in _items(body.get("data")):
        for kind, rate in rates.items():
            if rate and rng.random() < rate and MALFORM_KINDS[kind](item):
                damaged[kind] += 1
    return damaged


def malform_stones(body: dict[str, Any], stones: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Damage the items of the named stones (`diamond.id`) in place, every time: kind -> stone ids. Returns how many
    of each were damaged."""
    damaged = dict.fromkeys(stones, 0)
    wanted = {kind: set(ids) for kind, ids in stones.items()}
    for item in _items(body.get("data")):
        stone_id = _diamond(item).get("id")
        for kind, ids in wanted.items():
            if stone_id in ids and MALFORM_KINDS[kind](item):
                damaged[kind] += 1
    return damaged
