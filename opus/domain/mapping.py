"""Map one raw Nivoda item (an element of `diamonds_by_query.items`) to a `Diamond`.

`map_nivoda_item` never raises. A record that cannot be mapped yields a `MappingError` naming the field by its
path in the item (`price`, `diamond.certificate.carats`, ...), so that the consolidator can log it and go on.

Required: item `id` (offer id), `diamond.id` (supplier stone id), `price` (positive integer US cents),
`diamond.certificate.carats` (> 0) and `diamond.certificate.shape`. Everything else is optional: a value
that is missing, empty or unreadable becomes None rather than an error.

Normalisation (enums are upper case so that search filters hit indexes):
- open vocabularies, kept in the feed's own spelling, upper-cased with whitespace trimmed and collapsed:
  `shape` (after the synonyms in `SHAPE_SYNONYMS`), `color`, `fancy_*`, `lab`;
- closed vocabularies, anything unknown becomes None:
  cut/polish/symmetry  `GRADES`        IDEAL, EXCELLENT, VERY_GOOD, GOOD, FAIR, POOR
  clarity              `CLARITIES`     FL, IF, VVS1, VVS2, VS1, VS2, SI1, SI2, SI3, I1, I2, I3
  fluorescence         `FLUORESCENCE`  NONE, FAINT, MEDIUM, STRONG, VERY_STRONG ("slight" counts as FAINT)
  availability         `AVAILABILITY`  see `Availability`; anything else is UNKNOWN.
- carats are quantised to 0.001 ct (labs report 0.01, a few 0.001); measurements (mm) and percentages to 0.01;
  prices are dollars with two places (150050 cents -> 1500.50). Rounding is half-up.
- a colour of "Fancy" (or "Fancy ...") or a missing colour with `f_color` set gives `color="FANCY"` and the
  `fancy_*` fields; `fancy_*` stay None for white stones, whatever noise the feed carries in `f_*`.
- `lab_grown`: `certificate.labgrown` (a boolean, or "true"/"false"/"yes"/"no"); when it says nothing, a
  non-blank `certificate.labgrown_type` means True; otherwise False.
- media, empty strings counting as missing: image from `diamond.image`, then `certificate.image`; video from
  `diamond.video`, `certificate.v360.url`, `diamond.v360.url`, `diamond.supplier_video_link`, `certificate.video`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Final, TypeGuard

from opus.domain.models import CENT, Availability, Diamond

# Bump on any change to what a record maps to. Every diamonds row records the version it was built with, and
# consolidation rebuilds the rows built with another one, unchanged payloads included.
MAPPING_VERSION: Final = 1

CARAT_QUANTUM: Final = Decimal("0.001")
MEASUREMENT_QUANTUM: Final = Decimal("0.01")
# Bounds keep values inside the database's numeric columns (money is numeric(12, 2)).
MAX_PRICE_CENTS: Final = 10**12 - 1
MAX_CARATS: Final = Decimal(10_000)
MAX_MEASUREMENT: Final = Decimal(10_000)
_MAX_ID_INT: Final = 10**30

# Independent of the caller's decimal context: the same record always maps to the same values.
_CTX: Final = Context(prec=34, rounding=ROUND_HALF_UP)

SHAPE_SYNONYMS: Final[Mapping[str, str]] = {
    "RD": "ROUND", "RB": "ROUND", "BR": "ROUND", "RBC": "ROUND", "ROUND BRILLIANT": "ROUND",
    "OV": "OVAL", "PR": "PRINCESS", "CU": "CUSHION", "EM": "EMERALD", "PS": "PEAR", "MQ": "MARQUISE",
    "RA": "RADIANT", "AS": "ASSCHER", "HS": "HEART", "HT": "HEART",
}  # fmt: skip

GRADES: Final[Mapping[str, str]] = {
    "ID": "IDEAL", "IDEAL": "IDEAL",
    "EX": "EXCELLENT", "EXC": "EXCELLENT", "EXCELLENT": "EXCELLENT",
    "VG": "VERY_GOOD", "VERY GOOD": "VERY_GOOD",
    "G": "GOOD", "GD": "GOOD", "GOOD": "GOOD",
    "F": "FAIR", "FR": "FAIR", "FAIR": "FAIR",
    "P": "POOR", "PR": "POOR", "POOR": "POOR",
}  # fmt: skip

CLARITIES: Final[Mapping[str, str]] = {
    **{c: c for c in ("FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "SI3", "I1", "I2", "I3")},
    "FLAWLESS": "FL", "INTERNALLYFLAWLESS": "IF",
}  # fmt: skip

FLUORESCENCE: Final[Mapping[str, str]] = {
    "NON": "NONE", "N": "NONE", "NONE": "NONE", "NIL": "NONE", "NO": "NONE",
    "FNT": "FAINT", "F": "FAINT", "FAINT": "FAINT", "SL": "FAINT", "SLT": "FAINT", "SLIGHT": "FAINT",
    "VSL": "FAINT", "VERY SLIGHT": "FAINT",
    "MED": "MEDIUM", "M": "MEDIUM", "MD": "MEDIUM", "MEDIUM": "MEDIUM",
    "STG": "STRONG", "ST": "STRONG", "S": "STRONG", "STRONG": "STRONG",
    "VST": "VERY_STRONG", "VSTG": "VERY_STRONG", "VERY STRONG": "VERY_STRONG",
}  # fmt: skip

AVAILABILITY: Final[Mapping[str, Availability]] = {
    "AVAILABLE": Availability.AVAILABLE,
    "ON HOLD": Availability.ON_HOLD,
    "HOLD": Availability.ON_HOLD,
    "SOLD": Availability.SOLD,
    "MEMO": Availability.MEMO,
}

_EYE_CLEAN_WORDS: Final[Mapping[str, bool]] = {
    "YES": True, "Y": True, "TRUE": True, "E0": True, "EYE CLEAN": True,
    "NO": False, "N": False, "FALSE": False,
}  # fmt: skip
_BOOLEAN_WORDS: Final[Mapping[str, bool]] = {"TRUE": True, "YES": True, "FALSE": False, "NO": False}


@dataclass(frozen=True, slots=True)
class MappingError:
    """Why one record could not be mapped: `field` is its path in the raw item."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class _Rejected(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


def map_nivoda_item(item: object, feed: str = "nivoda") -> Diamond | MappingError:
    """A `Diamond` from one raw item (any JSON-like value is accepted), or a `MappingError`; never raises."""
    try:
        return _map(item, feed)
    except _Rejected as rejected:
        return MappingError(rejected.field, rejected.reason)
    except Exception as exc:  # a defect here must cost one record, never a whole batch
        return MappingError("item", f"unexpected {type(exc).__name__}")


def _map(item: object, feed: str) -> Diamond:
    if not _is_object(item):
        raise _Rejected("item", f"expected an object, got {_kind(item)}")
    offer_id = _identifier(item.get("id"), "id")
    diamond = _object(item, "diamond", "diamond")
    stone_id = _identifier(diamond.get("id"), "diamond.id")
    cert = _object(diamond, "certificate", "diamond.certificate")
    feed_price = _price(item.get("price"))
    carats = _carats(cert.get("carats"))
    shape = _shape(cert.get("shape"))

    color = _norm(cert.get("color"))
    f_color = _norm(cert.get("f_color"))
    fancy = (color is None and f_color is not None) or (color is not None and color.startswith("FANCY"))
    supplier = _optional_object(diamond.get("supplier"))
    cert_v360 = _optional_object(cert.get("v360"))
    diamond_v360 = _optional_object(diamond.get("v360"))
    return Diamond(
        feed=feed,
        supplier_stone_id=stone_id,
        offer_id=offer_id,
        shape=shape,
        carats=carats,
        lab_grown=_lab_grown(cert.get("labgrown"), cert.get("labgrown_type")),
        feed_price=feed_price,
        availability=_availability(diamond.get("availability")),
        color="FANCY" if fancy else color,
        clarity=_lookup(CLARITIES, _compact(cert.get("clarity"))),
        cut=_lookup(GRADES, _key(cert.get("cut"))),
        polish=_lookup(GRADES, _key(cert.get("polish"))),
        symmetry=_lookup(GRADES, _key(cert.get("symmetry"))),
        fluorescence=_lookup(FLUORESCENCE, _key(cert.get("floInt"))),
        fancy_color=f_color if fancy else None,
        fancy_intensity=_norm(cert.get("f_intensity")) if fancy else None,
        fancy_overtone=_norm(cert.get("f_overtone")) if fancy else None,
        lab=_norm(cert.get("lab")),
        certificate_number=_text(cert.get("certNumber")),
        length_mm=_measurement(cert.get("length")),
        width_mm=_measurement(cert.get("width")),
        depth_mm=_measurement(cert.get("depth")),
        depth_pct=_measurement(cert.get("depthPercentage")),
        table_pct=_measurement(cert.get("table")),
        eye_clean=_eye_clean(diamond.get("eyeClean")),
        hold_id=_text(diamond.get("HoldId")),
        image_url=_text(diamond.get("image")) or _text(cert.get("image")),
        video_url=(
            _text(diamond.get("video"))
            or _text(cert_v360.get("url"))
            or _text(diamond_v360.get("url"))
            or _text(diamond.get("supplier_video_link"))
            or _text(cert.get("video"))
        ),
        certificate_url=_text(cert.get("pdfUrl")),
        supplier_id=_text(supplier.get("id")),
        supplier_name=_text(supplier.get("name")),
    )


# --- structure -------------------------------------------------------------------------------------------


def _is_object(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object" if _is_object(value) else type(value).__name__


def _object(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        raise _Rejected(path, "missing")
    if not _is_object(value):
        raise _Rejected(path, f"expected an object, got {_kind(value)}")
    return value


_EMPTY: Final[Mapping[str, Any]] = {}


def _optional_object(value: object) -> Mapping[str, Any]:
    return value if _is_object(value) else _EMPTY


# --- required fields -------------------------------------------------------------------------------------


def _identifier(value: object, path: str) -> str:
    if value is None:
        raise _Rejected(path, "missing")
    text = _text(value)
    if text is None:
        if isinstance(value, str):
            raise _Rejected(path, "empty")
        raise _Rejected(path, f"expected a string or an integer, got {_kind(value)}")
    return text


def _price(value: object) -> Decimal:
    if value is None:
        raise _Rejected("price", "missing")
    cents = _whole_number(value)
    if cents is None:
        raise _Rejected("price", f"expected integer cents, got {_describe(value)}")
    if cents <= 0:
        raise _Rejected("price", "must be positive")
    if cents > MAX_PRICE_CENTS:
        raise _Rejected("price", "out of range")
    return cents.scaleb(-2, _CTX).quantize(CENT, context=_CTX)


def _whole_number(value: object) -> Decimal | None:
    """An integral number from an int, an integral float or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    number = _decimal(value)
    if number is None or number != number.to_integral_value(context=_CTX):
        return None
    return number


def _carats(value: object) -> Decimal:
    path = "diamond.certificate.carats"
    if value is None:
        raise _Rejected(path, "missing")
    number = _decimal(value)
    if number is None:
        raise _Rejected(path, f"expected a number, got {_describe(value)}")
    if number >= MAX_CARATS:
        raise _Rejected(path, "out of range")
    carats = number.quantize(CARAT_QUANTUM, context=_CTX) if number > 0 else number
    if carats <= 0:
        raise _Rejected(path, "must be positive")
    return carats


def _shape(value: object) -> str:
    path = "diamond.certificate.shape"
    if value is None:
        raise _Rejected(path, "missing")
    shape = _norm(value)
    if shape is None:
        raise _Rejected(path, "empty" if isinstance(value, str) else f"expected a string, got {_kind(value)}")
    return SHAPE_SYNONYMS.get(shape, shape)


def _describe(value: object) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "...")
    return _kind(value)


# --- optional fields -------------------------------------------------------------------------------------


def _decimal(value: object) -> Decimal | None:
    """A finite Decimal from a number or a numeric string; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest text that reads back as the same float: 1.01, not 1.0100000000000000088...
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _measurement(value: object) -> Decimal | None:
    number = _decimal(value)
    if number is None or number < 0 or number >= MAX_MEASUREMENT:
        return None
    return number.quantize(MEASUREMENT_QUANTUM, context=_CTX)


def _text(value: object) -> str | None:
    """A trimmed non-empty string from a string or an integer, else None."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool) and -_MAX_ID_INT < value < _MAX_ID_INT:
        return str(value)
    return None


def _norm(value: object) -> str | None:
    """Upper case, whitespace trimmed and collapsed; None unless a non-blank string."""
    if not isinstance(value, str):
        return None
    return " ".join(value.split()).upper() or None


def _key(value: object) -> str | None:
    """`_norm`, with underscores and hyphens read as spaces: the key into a synonym table."""
    if not isinstance(value, str):
        return None
    return " ".join(value.replace("_", " ").replace("-", " ").split()).upper() or None


def _compact(value: object) -> str | None:
    """Upper case without any whitespace: "VVS 1" and "vvs1" both read VVS1."""
    if not isinstance(value, str):
        return None
    return "".join(value.split()).upper() or None


def _lookup(table: Mapping[str, str], key: str | None) -> str | None:
    return None if key is None else table.get(key)


def _availability(value: object) -> Availability:
    key = _key(value)
    return Availability.UNKNOWN if key is None else AVAILABILITY.get(key, Availability.UNKNOWN)


def _lab_grown(labgrown: object, labgrown_type: object) -> bool:
    if isinstance(labgrown, bool):
        return labgrown
    word = _key(labgrown)
    if word is not None and word in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[word]
    # `labgrown` can be null in production: a stated growth type (CVD, HPHT) still says lab-grown.
    return isinstance(labgrown_type, str) and bool(labgrown_type.strip())


def _eye_clean(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    key = _key(value)
    if key is None:
        return None
    if key.endswith("%"):
        percent = _decimal(key[:-1])
        return None if percent is None else percent >= 100
    return _EYE_CLEAN_WORDS.get(key)
