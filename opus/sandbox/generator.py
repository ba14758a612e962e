"""Deterministic synthetic diamond inventory.

Everything is drawn from one `random.Random(seed)` in a fixed order and timestamps come from a fixed
window, so the same seed and count always give the same stones, whatever the wall clock says.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate
from typing import Generic, TypeVar

EPOCH_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
EPOCH_END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SUPPLIER_COUNT = 40
MIN_PRICE_CENTS = 300_00
MAX_PRICE_CENTS = 250_000_00


@dataclass(slots=True)
class Supplier:
    id: str
    name: str
    legal_name: str


@dataclass(slots=True)
class Stone:
    serial: int
    stone_id: str  # diamond.id, the supplier stone id
    offer_id: str  # item.id, the offer id
    created_ms: int
    updated_ms: int
    labgrown: bool
    shape: str
    ct100: int  # carats in hundredths, so price per carat is exact integer arithmetic
    color: str
    f_color: str | None
    f_intensity: str | None
    f_overtone: str | None
    clarity: str
    cut: str | None
    polish: str
    symmetry: str
    flo: str  # canonical NON/FNT/MED/STG/VST, used by filters
    flo_text: str  # what the certificate says, abbreviated or spelled out
    price_cents: int
    diamond_price_cents: int
    discount: float
    availability: str
    hold_id: str | None
    supplier: int
    lab: str
    cert_number: str
    cert_labgrown: bool | None
    labgrown_type: str | None
    length: float
    width: float
    depth: float
    depth_pct: float
    table_pct: float
    eye_clean: bool | str | None
    image_mode: str  # "both", "diamond", "cert_only", "none"
    video_mode: str  # "both", "video", "v360_only", "supplier_only", "none"

    @property
    def carats(self) -> float:
        return self.ct100 / 100

    @property
    def ppc_floor(self) -> int:
        # floor(price_cents / 100 / (ct100 / 100)) == price_cents // ct100, with no float rounding
        return self.price_cents // self.ct100

    @property
    def dollar_floor(self) -> int:
        return self.price_cents // 100

    @property
    def has_image(self) -> bool:
        return self.image_mode != "none"

    @property
    def has_v360(self) -> bool:
        return self.video_mode in ("both", "v360_only")

    @property
    def has_video(self) -> bool:
        return self.video_mode != "none"


T = TypeVar("T")


class _Pick(Generic[T]):
    """Weighted choice with precomputed cumulative weights (much faster than random.choices per call)."""

    def __init__(self, weighted: dict[T, float]) -> None:
        self.values = list(weighted)
        self.cum = list(accumulate(weighted.values()))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> T:
        return self.values[bisect(self.cum, rng.random() * self.total)]

    def column(self, rng: random.Random, n: int) -> list[T]:
        return rng.choices(self.values, cum_weights=self.cum, k=n)


SHAPES = _Pick({"ROUND": 45, "OVAL": 12, "EMERALD": 7, "CUSHION": 6, "PRINCESS": 6, "PEAR": 6,
                "RADIANT": 5, "MARQUISE": 3, "ASSCHER": 2, "HEART": 2, "CUSHION MODIFIED": 3, "BAGUETTE": 1,
                "TRILLIANT": 1})
# length/width ratio per shape, for plausible measurements
SHAPE_RATIO = {"OVAL": 1.4, "EMERALD": 1.4, "CUSHION": 1.1, "PEAR": 1.6, "RADIANT": 1.25, "MARQUISE": 2.0,
               "CUSHION MODIFIED": 1.15, "BAGUETTE": 2.5, "TRILLIANT": 1.0}
COLORS = "DEFGHIJKLMNOPQRSTUVWXYZ"
NATURAL_COLOR = _Pick({"D": 6, "E": 9, "F": 12, "G": 15, "H": 14, "I": 11, "J": 9, "K": 6, "L": 4,
                       "M": 3, "N": 1.5, "O": 0.6, "P": 0.4, "Q": 0.3, "R": 0.2, "S": 0.2, "U": 0.1,
                       "W": 0.1, "Y": 0.1})
LAB_COLOR = _Pick({"D": 15, "E": 20, "F": 20, "G": 15, "H": 10, "I": 7, "J": 5, "K": 3})
CLARITIES = ["FL", "IF", "VVS1", "VVS2", "VS1", "VS2", "SI1", "SI2", "SI3", "I1", "I2", "I3"]
NATURAL_CLARITY = _Pick(dict(zip(CLARITIES, [0.5, 2, 6, 9, 16, 20, 20, 15, 2, 6, 2.5, 1], strict=True)))
LAB_CLARITY = _Pick(dict(zip(CLARITIES, [1, 4, 20, 25, 25, 15, 8, 2, 0, 0, 0, 0], strict=True)))
GRADE = _Pick({"EX": 62, "VG": 26, "GD": 9, "F": 2, "P": 1})
FLUORESCENCE = _Pick({"NON": 65, "FNT": 15, "MED": 10, "STG": 7, "VST": 3})
FLUORESCENCE_WORD = {"NON": "None", "FNT": "Faint", "MED": "Medium", "STG": "Strong", "VST": "Very Strong"}
NATURAL_LAB = _Pick({"GIA": 75, "IGI": 10, "HRD": 10, "GCAL": 5})
LAB_LAB = _Pick({"IGI": 70, "GIA": 15, "GCAL": 10, "HRD": 5})
AVAILABILITY = _Pick({"AVAILABLE": 92, "ON HOLD": 4, "MEMO": 4})
EYE_CLEAN: _Pick[bool | str | None] = _Pick(
    {None: 30, True: 50, False: 3, "100%": 5, "Yes": 4, "No": 3, "E0": 3, "E1": 2})
IMAGE_MODE = _Pick({"both": 60, "diamond": 28, "cert_only": 7, "none": 5})
VIDEO_MODE = _Pick({"both": 65, "video": 15, "v360_only": 8, "supplier_only": 6, "none": 6})
FANCY_COLOR = _Pick({"Yellow": 40, "Pink": 15, "Blue": 10, "Brown": 15, "Green": 5, "yellow": 5,
                     "Fancy Yellow": 5, "Brownish Yellow": 5})
FANCY_INTENSITY = _Pick({"Fancy Light": 25, "Fancy": 25, "Fancy Intense": 30, "Fancy Vivid": 15,
                         "Fancy Deep": 5})
FANCY_OVERTONE = _Pick({"": 60, "Greenish": 10, "Brownish": 15, "Orangy": 10, "Purplish": 5})
# price multipliers: price per carat rises with colour and clarity quality
COLOR_FACTOR = {c: max(0.3, 1.6 - 0.14 * i) for i, c in enumerate(COLORS)}
CLARITY_FACTOR = dict(zip(CLARITIES, [1.8, 1.6, 1.4, 1.3, 1.15, 1.0, 0.85, 0.7, 0.6, 0.45, 0.35, 0.3],
                          strict=True))
GRADE_FACTOR = {"EX": 1.1, "VG": 1.0, "GD": 0.9, "F": 0.8, "P": 0.7, None: 1.0}
MAGIC_SIZES = (0.5, 0.7, 0.9, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
_NAME_A = ["Aurora", "Brilliant", "Crown", "Delta", "Empire", "Facet", "Global", "Horizon", "Imperial",
           "Jewel"]
_NAME_B = ["Gems", "Diamonds", "Stones", "Brilliance"]


def make_id(rng: random.Random) -> str:
    """A UUID-shaped id drawn from the generator's own stream (uuid4() would break determinism)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def make_suppliers(rng: random.Random, count: int = SUPPLIER_COUNT) -> list[Supplier]:
    out = []
    for i in range(count):
        name = f"{_NAME_A[i % len(_NAME_A)]} {_NAME_B[(i // len(_NAME_A)) % len(_NAME_B)]}"
        suffix = ["Ltd", "LLP", "Inc.", "BVBA", "Pvt Ltd"][i % 5]
        out.append(Supplier(id=make_id(rng), name=name, legal_name=f"{name} {suffix}"))
    return out


def _carats(rng: random.Random, labgrown: bool) -> int:
    carats = 0.30 + rng.expovariate(1.0 if labgrown else 1.4)
    if rng.random() < 0.3:  # trade favours "magic" weights just above round numbers
        for size in MAGIC_SIZES:
            if carats <= size <= carats * 1.15:
                carats = size + rng.random() * 0.03
                break
    return max(30, min(1000, round(carats * 100)))


def _price(rng: random.Random, s: Stone) -> int:
    carats = s.carats
    ppc = 4500.0 * carats**0.9 * COLOR_FACTOR.get(s.color, 1.2) * CLARITY_FACTOR[s.clarity]
    ppc *= GRADE_FACTOR[s.cut] * math.exp(rng.gauss(0.0, 0.12))
    if s.labgrown:
        ppc *= 0.12
    total = ppc * carats * 100
    if total > MAX_PRICE_CENTS:  # compress instead of clamping so the top is not one flat price
        total = MAX_PRICE_CENTS - 20_000_00 * rng.random()
    return max(MIN_PRICE_CENTS + int(rng.random() * 5000), int(total))


def _measurements(rng: random.Random, s: Stone) -> None:
    diameter = 6.45 * (s.carats ** (1 / 3))
    ratio = SHAPE_RATIO.get(s.shape, 1.0) * (0.97 + 0.06 * rng.random())
    s.width = round(diameter / math.sqrt(ratio), 2)
    s.length = round(s.width * ratio, 2)
    s.depth_pct = round(58.0 + 14.0 * rng.random(), 1)
    s.depth = round(s.width * s.depth_pct / 100, 2)
    s.table_pct = round(53.0 + 17.0 * rng.random(), 1)


def _cert_number(rng: random.Random, lab: str, labgrown: bool) -> str:
    digits = str(10**9 + int(rng.random() * 9 * 10**9))
    if lab == "IGI":
        return ("LG" if labgrown else "") + digits[:9]
    return digits if lab in ("GIA", "GCAL") else digits[:9]


def _fancy(rng: random.Random, s: Stone) -> None:
    s.color = "Fancy"
    if rng.random() < 0.4:  # documented pitfall: "Fancy" with no f_color at all
        return
    s.f_color = FANCY_COLOR(rng)
    s.f_intensity = FANCY_INTENSITY(rng)
    s.f_overtone = FANCY_OVERTONE(rng) or None


def make_stones(rng: random.Random, first_serial: int, stamps: list[tuple[int, int]], suppliers: int
                ) -> list[Stone]:
    """One stone per (created_ms, updated_ms) pair. Categorical attributes are drawn a column at a time
    (`random.choices(k=n)` is an order of magnitude cheaper than n single draws); lab-grown and natural
    columns are both drawn and then selected, which keeps the stream order independent of the data."""
    n = len(stamps)
    lab = [r < 0.66 for r in _uniform(rng, n)]
    shape, grade_ok = SHAPES.column(rng, n), [r < 0.4 for r in _uniform(rng, n)]
    nat_color, lab_color = NATURAL_COLOR.column(rng, n), LAB_COLOR.column(rng, n)
    nat_clarity, lab_clarity = NATURAL_CLARITY.column(rng, n), LAB_CLARITY.column(rng, n)
    cut, polish, symmetry = GRADE.column(rng, n), GRADE.column(rng, n), GRADE.column(rng, n)
    flo, nat_lab, lab_lab = FLUORESCENCE.column(rng, n), NATURAL_LAB.column(rng, n), LAB_LAB.column(rng, n)
    avail, eye = AVAILABILITY.column(rng, n), EYE_CLEAN.column(rng, n)
    image, video = IMAGE_MODE.column(rng, n), VIDEO_MODE.column(rng, n)
    supplier = [int(suppliers * r**1.5) for r in _uniform(rng, n)]
    stones = []
    for i, (created, updated) in enumerate(stamps):
        lg = lab[i]
        s = Stone(
            serial=first_serial + i, stone_id=make_id(rng), offer_id=make_id(rng), created_ms=created,
            updated_ms=updated, labgrown=lg, shape=shape[i], ct100=_carats(rng, lg),
            color=lab_color[i] if lg else nat_color[i], f_color=None, f_intensity=None, f_overtone=None,
            clarity=lab_clarity[i] if lg else nat_clarity[i],
            cut=cut[i] if shape[i] == "ROUND" or grade_ok[i] else None,  # fancy shapes often lack a cut grade
            polish=polish[i], symmetry=symmetry[i],
            flo="NON" if lg and rng.random() < 0.9 else flo[i], flo_text="", price_cents=0,
            diamond_price_cents=0, discount=0.0, availability=avail[i], hold_id=None, supplier=supplier[i],
            lab=lab_lab[i] if lg else nat_lab[i], cert_number="", cert_labgrown=False, labgrown_type=None,
            length=0.0, width=0.0, depth=0.0, depth_pct=0.0, table_pct=0.0, eye_clean=eye[i],
            image_mode=image[i], video_mode=video[i],
        )
        _finish(rng, s)
        stones.append(s)
    return stones


def _uniform(rng: random.Random, n: int) -> list[float]:
    return [rng.random() for _ in range(n)]


def _finish(rng: random.Random, s: Stone) -> None:
    """The attributes that depend on others: fancy colour, price, certificate, measurements."""
    if rng.random() < (0.02 if s.labgrown else 0.05):
        _fancy(rng, s)
    s.flo_text = s.flo if rng.random() < 0.7 else FLUORESCENCE_WORD[s.flo]
    s.price_cents = _price(rng, s)
    s.diamond_price_cents = round(s.price_cents / (1.05 + 0.1 * rng.random()))
    s.discount = round(-80.0 - 15.0 * rng.random() if s.labgrown else -15.0 - 45.0 * rng.random(), 2)
    if s.availability == "ON HOLD":
        s.hold_id = make_id(rng)
    s.cert_number = _cert_number(rng, s.lab, s.labgrown)
    if s.labgrown:
        s.labgrown_type = "CVD" if rng.random() < 0.75 else "HPHT"
        s.cert_labgrown = None if rng.random() < 0.06 else True  # documented pitfall: labgrown null
    _measurements(rng, s)


def generate(count: int, seed: int) -> tuple[list[Supplier], list[Stone]]:
    """`count` stones and their suppliers, identical for identical (count, seed)."""
    rng = random.Random(seed)
    suppliers = make_suppliers(rng)
    span = EPOCH_END_MS - EPOCH_START_MS
    stamps = []
    for r1, r2, r3 in zip(_uniform(rng, count), _uniform(rng, count), _uniform(rng, count), strict=True):
        created = EPOCH_START_MS + int(r1 * span)
        stamps.append((created, created if r2 < 0.5 else created + int(r3 * (EPOCH_END_MS - created))))
    return suppliers, make_stones(rng, 0, stamps, len(suppliers))
