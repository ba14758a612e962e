"""Raw Nivoda items shaped as `nivoda-api.md` describes them, and small functions to bend them.

Every builder returns a fresh deep copy, so a test may change what it gets.
"""

from __future__ import annotations

import copy
from typing import Any

_NATURAL_ROUND: dict[str, Any] = {
    "id": "7f1c2a9e-3b4d-4c5e-9f60-1a2b3c4d5e6f",
    "price": 150050,
    "discount": -32.5,
    "diamond_price": 125042,
    "markup_price": 150050,
    "markup_discount": -28.1,
    "diamond": {
        "id": "SD-4431987",
        "availability": "AVAILABLE",
        "HoldId": None,
        "NivodaStockId": "NIV-77231",
        "supplierStockId": "R1-0042",
        "image": "https://media.example.net/stones/SD-4431987/still.jpg",
        "video": "https://media.example.net/stones/SD-4431987/video.mp4",
        "supplier_video_link": "https://supplier.example.com/v/R1-0042",
        "v360": {"id": "v-1", "url": "https://v360.example.net/SD-4431987"},
        "eyeClean": True,
        "brown": 0,
        "green": 0,
        "milky": 0,
        "mine_of_origin": "Botswana",
        "country_of_polishing": "India",
        "return_window": 30,
        "delivery_time": {
            "express_timeline_applicable": False,
            "min_business_days": 2,
            "max_business_days": 5,
        },
        "supplier": {"id": "SUP-118", "name": "Antwerp Brilliants", "legal_name": "Antwerp Brilliants BV"},
        "certificate": {
            "id": "CERT-9921",
            "lab": "GIA",
            "certNumber": "2205719845",
            "pdfUrl": "https://certs.example.net/GIA/2205719845.pdf",
            "shape": "ROUND",
            "fullShape": "Round Brilliant",
            "carats": 1.01,
            "cut": "EX",
            "polish": "EX",
            "symmetry": "VG",
            "color": "G",
            "clarity": "VS1",
            "length": 6.43,
            "width": 6.47,
            "depth": 3.98,
            "depthPercentage": 61.7,
            "table": 57,
            "crownAngle": 34.5,
            "pavAngle": 40.8,
            "girdle": "Medium to Slightly Thick",
            "culetSize": "None",
            "floInt": "NON",
            "floCol": None,
            "f_color": None,
            "f_intensity": None,
            "f_overtone": None,
            "treated": False,
            "labgrown": False,
            "labgrown_type": None,
            "country_of_origin": "Botswana",
            "image": "https://certs.example.net/GIA/2205719845.jpg",
            "video": None,
            "v360": {"id": "cv-1", "url": "https://v360.example.net/cert/2205719845"},
        },
    },
}

_LAB_GROWN_OVAL: dict[str, Any] = {
    "id": 90817265,
    "price": 48999,
    "diamond_price": 40833,
    "markup_price": 48999,
    "diamond": {
        "id": 5512093,
        "availability": "ON HOLD",
        "HoldId": "H-20260113-0007",
        "image": "",
        "video": None,
        "supplier_video_link": "",
        "v360": None,
        "eyeClean": "100%",
        "supplier": {"id": 3310, "name": "Surat Lab Stones"},
        "certificate": {
            "lab": "igi",
            "certNumber": 612345678,
            "pdfUrl": "https://certs.example.net/IGI/612345678.pdf",
            "shape": " oval ",
            "carats": "2.04",
            "cut": None,
            "polish": "Excellent",
            "symmetry": "Very Good",
            "color": "E",
            "clarity": "VVS2",
            "length": "9.85",
            "width": "7.01",
            "depth": "4.33",
            "depthPercentage": "61.8",
            "table": "-",
            "floInt": "None",
            "labgrown": None,
            "labgrown_type": "CVD",
            "image": "https://certs.example.net/IGI/612345678.jpg",
            "v360": None,
        },
    },
}

_FANCY_PEAR: dict[str, Any] = {
    "id": "a0c4e1b2-0000-4d3e-8f21-99aa00bb11cc",
    "price": 1275000,
    "diamond": {
        "id": "FY-88213",
        "availability": "MEMO",
        "eyeClean": "No",
        "supplier": {"id": "SUP-9", "name": "Fancy Colours Ltd"},
        "certificate": {
            "lab": "GIA",
            "certNumber": "1186652003",
            "shape": "PEAR",
            "carats": 0.72,
            "polish": "VG",
            "symmetry": "G",
            "color": "Fancy",
            "clarity": "SI1",
            "floInt": "FNT",
            "f_color": " yellow ",
            "f_intensity": "Fancy  Intense",
            "f_overtone": "greenish",
            "labgrown": False,
        },
    },
}


def natural_round() -> dict[str, Any]:
    """A complete natural round brilliant, every field clean."""
    return copy.deepcopy(_NATURAL_ROUND)


def lab_grown_oval() -> dict[str, Any]:
    """A lab-grown oval with the production mess: integer ids, numeric strings, null labgrown, "100%"."""
    return copy.deepcopy(_LAB_GROWN_OVAL)


def fancy_pear() -> dict[str, Any]:
    """A natural fancy yellow with its colour only in `f_color` and friends."""
    return copy.deepcopy(_FANCY_PEAR)


Path = str | tuple[str, ...]


def _keys(path: Path) -> tuple[str, ...]:
    return tuple(path.split(".")) if isinstance(path, str) else path


def with_value(item: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """`item` with `path` (dotted, or a tuple of keys) set to `value`; intermediate objects must exist."""
    *parents, last = _keys(path)
    node = item
    for key in parents:
        node = node[key]
    node[last] = value
    return item


def without(item: dict[str, Any], path: Path) -> dict[str, Any]:
    """`item` with `path` (dotted, or a tuple of keys) removed."""
    *parents, last = _keys(path)
    node = item
    for key in parents:
        node = node[key]
    del node[last]
    return item


def all_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every path (a tuple of keys) to a key inside nested objects, parents before children."""
    paths: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            path = (*prefix, key)
            paths.append(path)
            paths.extend(all_paths(child, path))
    return paths
