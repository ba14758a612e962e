from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nivoda_items import all_paths, fancy_pear, lab_grown_oval, natural_round, with_value, without

from opus.domain.mapping import MappingError, map_nivoda_item
from opus.domain.models import Availability, Diamond


def mapped(item: Any, feed: str = "nivoda") -> Diamond:
    result = map_nivoda_item(item, feed)
    assert isinstance(result, Diamond), str(result)
    return result


def rejected(item: Any) -> MappingError:
    result = map_nivoda_item(item)
    assert isinstance(result, MappingError), result
    return result


def cert(path: str) -> str:
    return f"diamond.certificate.{path}"


# --- whole records ---------------------------------------------------------------------------------------


def test_clean_natural_round() -> None:
    d = mapped(natural_round())
    assert d == Diamond(
        feed="nivoda",
        supplier_stone_id="SD-4431987",
        offer_id="7f1c2a9e-3b4d-4c5e-9f60-1a2b3c4d5e6f",
        shape="ROUND",
        carats=Decimal("1.01"),
        lab_grown=False,
        feed_price=Decimal("1500.50"),
        availability=Availability.AVAILABLE,
        color="G",
        clarity="VS1",
        cut="EXCELLENT",
        polish="EXCELLENT",
        symmetry="VERY_GOOD",
        fluorescence="NONE",
        lab="GIA",
        certificate_number="2205719845",
        length_mm=Decimal("6.43"),
        width_mm=Decimal("6.47"),
        depth_mm=Decimal("3.98"),
        depth_pct=Decimal("61.7"),
        table_pct=Decimal("57"),
        eye_clean=True,
        image_url="https://media.example.net/stones/SD-4431987/still.jpg",
        video_url="https://media.example.net/stones/SD-4431987/video.mp4",
        certificate_url="https://certs.example.net/GIA/2205719845.pdf",
        supplier_id="SUP-118",
        supplier_name="Antwerp Brilliants",
    )


def test_messy_lab_grown_oval() -> None:
    d = mapped(lab_grown_oval(), feed="nivoda-lab")
    assert d.feed == "nivoda-lab"
    assert (d.offer_id, d.supplier_stone_id) == ("90817265", "5512093")
    assert d.shape == "OVAL"
    assert d.carats == Decimal("2.04")
    assert d.lab_grown is True
    assert d.feed_price == Decimal("489.99")
    assert d.availability is Availability.ON_HOLD
    assert d.hold_id == "H-20260113-0007"
    assert (d.cut, d.polish, d.symmetry) == (None, "EXCELLENT", "VERY_GOOD")
    assert d.fluorescence == "NONE"
    assert d.lab == "IGI"
    assert d.certificate_number == "612345678"
    assert (d.length_mm, d.width_mm, d.depth_mm) == (Decimal("9.85"), Decimal("7.01"), Decimal("4.33"))
    assert d.depth_pct == Decimal("61.8")
    assert d.table_pct is None  # "-" is not a number, and not an error either
    assert d.eye_clean is True
    assert d.image_url == "https://certs.example.net/IGI/612345678.jpg"
    assert d.video_url is None
    assert (d.supplier_id, d.supplier_name) == ("3310", "Surat Lab Stones")


def test_fancy_colour_from_f_fields() -> None:
    d = mapped(fancy_pear())
    assert d.color == "FANCY"
    assert (d.fancy_color, d.fancy_intensity, d.fancy_overtone) == ("YELLOW", "FANCY INTENSE", "GREENISH")
    assert d.availability is Availability.MEMO
    assert d.eye_clean is False
    assert d.fluorescence == "FAINT"


# --- identity and money ----------------------------------------------------------------------------------


def test_offer_id_and_supplier_stone_id_are_not_confused() -> None:
    item = with_value(natural_round(), "id", "OFFER-1")
    item = with_value(item, "diamond.id", "STONE-2")
    d = mapped(item)
    assert d.offer_id == "OFFER-1"
    assert d.supplier_stone_id == "STONE-2"


def test_ids_are_trimmed_and_integers_become_strings() -> None:
    item = with_value(natural_round(), "id", "  OFFER-1 ")
    item = with_value(item, "diamond.id", 42)
    d = mapped(item)
    assert (d.offer_id, d.supplier_stone_id) == ("OFFER-1", "42")


@pytest.mark.parametrize(
    ("cents", "dollars"),
    [
        (150050, "1500.50"),
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (999_999_999_999, "9999999999.99"),
        (150050.0, "1500.50"),
        ("150050", "1500.50"),
        (" 7 ", "0.07"),
    ],
)
def test_cents_become_exact_dollars(cents: object, dollars: str) -> None:
    price = mapped(with_value(natural_round(), "price", cents)).feed_price
    assert price == Decimal(dollars)
    assert str(price) == dollars  # two places, exactly


# --- eyeClean, fluorescence, grades, shape ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("Yes", True),
        ("y", True),
        ("TRUE", True),
        ("100%", True),
        ("100 %", True),
        ("E0", True),
        ("No", False),
        ("N", False),
        ("false", False),
        ("90%", False),
        ("99.5%", False),
        ("maybe", None),
        ("", None),
        ("abc%", None),
        (1, None),
        (None, None),
        ({"x": 1}, None),
    ],
)
def test_eye_clean(raw: object, expected: bool | None) -> None:
    assert mapped(with_value(natural_round(), "diamond.eyeClean", raw)).eye_clean is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NON", "NONE"),
        ("N", "NONE"),
        ("None", "NONE"),
        ("FNT", "FAINT"),
        ("Faint", "FAINT"),
        ("F", "FAINT"),
        ("SL", "FAINT"),
        ("Slight", "FAINT"),
        ("MED", "MEDIUM"),
        ("Medium", "MEDIUM"),
        ("STG", "STRONG"),
        ("Strong", "STRONG"),
        ("VST", "VERY_STRONG"),
        ("Very Strong", "VERY_STRONG"),
        (" very_strong ", "VERY_STRONG"),
        ("glowing", None),
        ("", None),
        (3, None),
        (None, None),
    ],
)
def test_fluorescence(raw: object, expected: str | None) -> None:
    assert mapped(with_value(natural_round(), cert("floInt"), raw)).fluorescence == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("EX", "EXCELLENT"),
        ("Excellent", "EXCELLENT"),
        ("VG", "VERY_GOOD"),
        ("very good", "VERY_GOOD"),
        ("VERY_GOOD", "VERY_GOOD"),
        ("G", "GOOD"),
        ("GD", "GOOD"),
        ("F", "FAIR"),
        ("P", "POOR"),
        ("ID", "IDEAL"),
        ("superb", None),
        (7, None),
    ],
)
@pytest.mark.parametrize("field", ["cut", "polish", "symmetry"])
def test_cut_polish_symmetry_grades(field: str, raw: object, expected: str | None) -> None:
    d = mapped(with_value(natural_round(), cert(field), raw))
    assert getattr(d, field) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("VS1", "VS1"),
        ("vvs 2", "VVS2"),
        ("IF", "IF"),
        ("Flawless", "FL"),
        ("I3", "I3"),
        ("SI 4", None),
        (2, None),
    ],
)
def test_clarity(raw: object, expected: str | None) -> None:
    assert mapped(with_value(natural_round(), cert("clarity"), raw)).clarity == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ROUND", "ROUND"),
        (" round ", "ROUND"),
        ("RD", "ROUND"),
        ("BR", "ROUND"),
        ("Round  Brilliant", "ROUND"),
        ("Cushion Modified", "CUSHION MODIFIED"),
        ("emerald", "EMERALD"),
        ("MQ", "MARQUISE"),
    ],
)
def test_shape(raw: str, expected: str) -> None:
    assert mapped(with_value(natural_round(), cert("shape"), raw)).shape == expected


def test_white_colour_is_upper_cased_and_fancy_fields_ignored() -> None:
    item = with_value(natural_round(), cert("color"), " h ")
    item = with_value(item, cert("f_color"), "Yellow")
    d = mapped(item)
    assert d.color == "H"
    assert d.fancy_color is None


# --- fancy colours ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["Fancy", "FANCY", "fancy", " Fancy "])
def test_fancy_without_f_color_is_not_an_error(raw: str) -> None:
    item = with_value(natural_round(), cert("color"), raw)
    d = mapped(item)
    assert d.color == "FANCY"
    assert (d.fancy_color, d.fancy_intensity, d.fancy_overtone) == (None, None, None)


def test_missing_colour_with_f_color_is_fancy() -> None:
    item = without(fancy_pear(), cert("color"))
    d = mapped(item)
    assert d.color == "FANCY"
    assert d.fancy_color == "YELLOW"


def test_null_colour_with_blank_f_color_is_no_colour() -> None:
    item = with_value(fancy_pear(), cert("color"), None)
    item = with_value(item, cert("f_color"), "  ")
    d = mapped(item)
    assert d.color is None
    assert d.fancy_color is None


# --- lab-grown -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labgrown", "labgrown_type", "expected"),
    [
        (True, None, True),
        (False, "CVD", False),  # an explicit answer wins
        (None, "CVD", True),
        (None, "HPHT", True),
        (None, "", False),
        (None, "  ", False),
        (None, None, False),
        ("true", None, True),
        ("No", "CVD", False),
        (1, "CVD", True),  # not a boolean: read as null
    ],
)
def test_lab_grown(labgrown: object, labgrown_type: object, expected: bool) -> None:
    item = with_value(natural_round(), cert("labgrown"), labgrown)
    item = with_value(item, cert("labgrown_type"), labgrown_type)
    assert mapped(item).lab_grown is expected


def test_lab_grown_when_both_fields_absent() -> None:
    item = without(without(lab_grown_oval(), cert("labgrown")), cert("labgrown_type"))
    assert mapped(item).lab_grown is False


# --- media -----------------------------------------------------------------------------------------------


def test_image_falls_back_to_certificate() -> None:
    item = without(natural_round(), "diamond.image")
    assert mapped(item).image_url == "https://certs.example.net/GIA/2205719845.jpg"
    item = with_value(natural_round(), "diamond.image", "  ")
    assert mapped(item).image_url == "https://certs.example.net/GIA/2205719845.jpg"
    item = with_value(item, cert("image"), None)
    assert mapped(item).image_url is None


def test_video_fallbacks_in_order() -> None:
    item = natural_round()
    assert mapped(item).video_url == "https://media.example.net/stones/SD-4431987/video.mp4"
    item = with_value(item, "diamond.video", "")
    assert mapped(item).video_url == "https://v360.example.net/cert/2205719845"
    item = with_value(item, cert("v360"), {"id": "cv-1", "url": ""})
    assert mapped(item).video_url == "https://v360.example.net/SD-4431987"
    item = with_value(item, "diamond.v360", None)
    assert mapped(item).video_url == "https://supplier.example.com/v/R1-0042"
    item = with_value(item, "diamond.supplier_video_link", None)
    item = with_value(item, cert("video"), "https://certs.example.net/GIA/2205719845.mp4")
    assert mapped(item).video_url == "https://certs.example.net/GIA/2205719845.mp4"
    item = with_value(item, cert("video"), "")
    assert mapped(item).video_url is None


def test_certificate_url_from_pdf_url() -> None:
    assert mapped(with_value(natural_round(), cert("pdfUrl"), "")).certificate_url is None


# --- availability and optional values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AVAILABLE", Availability.AVAILABLE),
        ("available", Availability.AVAILABLE),
        ("ON HOLD", Availability.ON_HOLD),
        ("ON_HOLD", Availability.ON_HOLD),
        ("HOLD", Availability.ON_HOLD),
        ("SOLD", Availability.SOLD),
        ("MEMO", Availability.MEMO),
        ("RESERVED", Availability.UNKNOWN),
        (None, Availability.UNKNOWN),
        (5, Availability.UNKNOWN),
    ],
)
def test_availability(raw: object, expected: Availability) -> None:
    assert mapped(with_value(natural_round(), "diamond.availability", raw)).availability is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (6.43, Decimal("6.43")),
        ("6.43", Decimal("6.43")),
        (6, Decimal("6")),
        (6.435, Decimal("6.44")),
        ("n/a", None),
        ("", None),
        (True, None),
        (-1, None),
        (float("nan"), None),
        (float("inf"), None),
        ("Infinity", None),
        ([6.43], None),
        (None, None),
    ],
)
def test_measurements_never_fail(raw: object, expected: Decimal | None) -> None:
    assert mapped(with_value(natural_round(), cert("length"), raw)).length_mm == expected


def test_optional_nested_objects_may_be_null_or_wrong() -> None:
    item = with_value(natural_round(), "diamond.supplier", None)
    item = with_value(item, cert("v360"), "not an object")
    item = with_value(item, "diamond.video", None)
    d = mapped(item)
    assert (d.supplier_id, d.supplier_name) == (None, None)
    assert d.video_url == "https://v360.example.net/SD-4431987"


def test_carats_are_quantised_to_thousandths() -> None:
    assert mapped(with_value(natural_round(), cert("carats"), 0.5004)).carats == Decimal("0.500")
    assert mapped(with_value(natural_round(), cert("carats"), "1.0005")).carats == Decimal("1.001")


# --- broken records --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("id", None, "id"),
        ("id", "", "id"),
        ("id", "   ", "id"),
        ("id", 1.5, "id"),
        ("id", True, "id"),
        ("diamond", None, "diamond"),
        ("diamond", [], "diamond"),
        ("diamond.id", None, "diamond.id"),
        ("diamond.id", {"id": 1}, "diamond.id"),
        ("diamond.certificate", None, "diamond.certificate"),
        ("diamond.certificate", "GIA", "diamond.certificate"),
        ("price", None, "price"),
        ("price", "abc", "price"),
        ("price", "", "price"),
        ("price", 0, "price"),
        ("price", -150050, "price"),
        ("price", True, "price"),
        ("price", 1500.5, "price"),
        ("price", "1500.5", "price"),
        ("price", float("nan"), "price"),
        ("price", float("inf"), "price"),
        ("price", 10**12, "price"),
        pytest.param("price", 10**5000, "price", id="price-5000-digits"),
        ("price", {"amount": 1}, "price"),
        (cert("carats"), None, cert("carats")),
        (cert("carats"), -1.01, cert("carats")),
        (cert("carats"), 0, cert("carats")),
        (cert("carats"), 0.0004, cert("carats")),
        (cert("carats"), "heavy", cert("carats")),
        (cert("carats"), False, cert("carats")),
        (cert("carats"), 1e300, cert("carats")),
        (cert("carats"), -1e300, cert("carats")),
        (cert("shape"), None, cert("shape")),
        (cert("shape"), " ", cert("shape")),
        (cert("shape"), 3, cert("shape")),
    ],
)
def test_broken_record_names_the_field(path: str, value: object, field: str) -> None:
    error = rejected(with_value(natural_round(), path, value))
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("id", "id"),
        ("diamond", "diamond"),
        ("diamond.id", "diamond.id"),
        ("diamond.certificate", "diamond.certificate"),
        ("price", "price"),
        (cert("carats"), cert("carats")),
        (cert("shape"), cert("shape")),
    ],
)
def test_missing_required_field(path: str, field: str) -> None:
    error = rejected(without(natural_round(), path))
    assert error == MappingError(field, "missing")
    assert str(error) == f"{field}: missing"


@pytest.mark.parametrize("item", [None, "item", 42, 1.5, True, [natural_round()], b"{}"])
def test_item_that_is_not_an_object(item: object) -> None:
    assert rejected(item).field == "item"


def test_price_as_text_reads_in_the_error() -> None:
    error = rejected(with_value(natural_round(), "price", "abc"))
    assert str(error) == "price: expected integer cents, got 'abc'"


def test_error_reads_well() -> None:
    assert str(MappingError("diamond.certificate.carats", "missing")) == "diamond.certificate.carats: missing"


# --- never raises ----------------------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "0", "-1", "1.5", "NaN", "sNaN", "-Infinity", "1e999999999", "100%", "Fancy"])
)
_KEYS = st.text(max_size=8)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=20,
)
_KNOWN_KEYS = sorted({path[-1] for path in all_paths(natural_round())})
# Objects that use the feed's own key names at every level, so that arbitrary values reach deep fields.
_ITEM_LIKE = st.recursive(
    _SCALARS,
    lambda children: st.dictionaries(st.sampled_from(_KNOWN_KEYS), children, max_size=8),
    max_leaves=40,
)


def assert_maps_or_names_a_field(item: object) -> None:
    result = map_nivoda_item(item)
    if isinstance(result, MappingError):
        assert result.field
        assert result.reason
        assert not result.reason.startswith("unexpected"), result  # a defect, not a data problem
    else:
        assert isinstance(result, Diamond)
        assert result.feed_price > 0
        assert result.carats > 0


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_never_raises_on_arbitrary_json(item: object) -> None:
    assert_maps_or_names_a_field(item)


@settings(max_examples=300, deadline=None)
@given(_ITEM_LIKE)
def test_never_raises_on_item_like_objects(item: object) -> None:
    assert_maps_or_names_a_field(item)


_VALID_ITEMS = [natural_round, lab_grown_oval, fancy_pear]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(_VALID_ITEMS),
    st.lists(
        st.tuples(st.integers(min_value=0), st.one_of(st.just("delete"), _JSON)),
        min_size=1,
        max_size=5,
    ),
)
def test_never_raises_on_mutations_of_a_valid_item(build: Any, mutations: list[tuple[int, object]]) -> None:
    item = build()
    for index, value in mutations:
        paths = all_paths(item)
        if not paths:
            break
        path = paths[index % len(paths)]
        if value == "delete":
            without(item, path)
        else:
            with_value(item, path, value)
    assert_maps_or_names_a_field(item)
