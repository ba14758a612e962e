"""A market-shaped inventory: the option `SandboxConfig.realistic` applies on top of the plain generator.

The plain generator's stones are reshaped from their own random stream (seeded apart from the
generator's), so the default inventory of a seed never changes and the realistic one is as repeatable.
Shapes it reproduces: most lab-grown stones well under $250/ct; natural stones with a median near
$1,500/ct, rising steeply with weight, colour and clarity; one dense band where about 3 % of all stones
(tens of thousands at 1.3 M) sit within a few dollars per carat, the commodity lab-grown carat that
makes price-per-carat partitioning hard; small stones under 0.4 ct; a share of stones with no media.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from opus.sandbox.generator import CLARITIES, COLORS, Stone, _measurements, _Pick, make_id

NATURAL_MEDIAN_PPC = 1500.0
LAB_MEDIAN_PPC = 120.0
DENSE_BAND_SHARE = 0.03  # of all stones
DENSE_BAND_DOLLARS = (96, 99)  # inclusive whole-dollar price per carat
SMALL_SHARE = {True: 0.06, False: 0.15}  # stones under 0.4 ct, lab-grown / natural
NO_MEDIA_SHARE = 0.10
AVAILABILITY = _Pick({"AVAILABLE": 86, "ON HOLD": 4, "MEMO": 5, "SOLD": 5})
# quality multipliers centred on 1 at the grades most stones have, so the medians stay where they are set
_COLOR_STEP = {True: 0.04, False: 0.10}
_CLARITY_STEP = {True: 0.05, False: 0.09}
_MEDIAN_COLOR, _MEDIAN_CLARITY = COLORS.index("G"), CLARITIES.index("VS2")
# weight exponent of price per carat: a 2 ct natural stone costs about 2.5x per carat what a 1 ct does
_WEIGHT_EXPONENT = {True: 0.25, False: 1.1}
_MEDIAN_CARATS = {True: 1.2, False: 0.6}


def _carats(rng: random.Random, labgrown: bool) -> int:
    if rng.random() < SMALL_SHARE[labgrown]:
        return 5 + int(rng.random() * 35)  # 0.05-0.39 ct: melee and small single stones
    mean_above = 1.0 if labgrown else 0.5
    return max(40, min(1000, round((0.40 + rng.expovariate(1 / mean_above)) * 100)))


def _quality_factor(stone: Stone) -> float:
    lg = stone.labgrown
    color = COLORS.index(stone.color) if stone.color in COLORS else _MEDIAN_COLOR - 3  # fancy: priced up
    clarity = CLARITIES.index(stone.clarity)
    return math.exp(-_COLOR_STEP[lg] * (color - _MEDIAN_COLOR) - _CLARITY_STEP[lg] * (clarity - _MEDIAN_CLARITY))


def _ppc_dollars(rng: random.Random, stone: Stone) -> float:
    lg = stone.labgrown
    median = LAB_MEDIAN_PPC if lg else NATURAL_MEDIAN_PPC
    weight = (stone.carats / _MEDIAN_CARATS[lg]) ** _WEIGHT_EXPONENT[lg]
    spread = math.exp(rng.gauss(0.0, 0.35 if lg else 0.3))
    return float(median * weight * _quality_factor(stone) * spread)


def _price_cents(rng: random.Random, ppc_floor: int, ct100: int) -> int:
    """A total price whose whole-dollar price per carat is exactly `ppc_floor`."""
    return max(1, ppc_floor * ct100 + int(rng.random() * ct100))


def reshape(stones: Iterable[Stone], rng: random.Random) -> None:
    """Give `stones` market-shaped weights, prices, availability and media, in place."""
    for s in stones:
        s.ct100 = _carats(rng, s.labgrown)
        _measurements(rng, s)
        if s.labgrown and rng.random() < DENSE_BAND_SHARE / 0.66:  # 0.66: the lab-grown share
            lo, hi = DENSE_BAND_DOLLARS
            ppc = lo + int(rng.random() * (hi - lo + 1))
        else:
            ppc = max(5, int(_ppc_dollars(rng, s)))
        s.price_cents = _price_cents(rng, ppc, s.ct100)
        s.diamond_price_cents = max(1, round(s.price_cents / (1.05 + 0.1 * rng.random())))
        s.availability = AVAILABILITY(rng)
        s.hold_id = make_id(rng) if s.availability == "ON HOLD" else None
        if rng.random() < NO_MEDIA_SHARE:
            s.image_mode, s.video_mode = "none", "none"
