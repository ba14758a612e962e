"""A `Stone` rendered as the JSON shape of a Nivoda item (graphql-core picks the selected fields).

Secondary attributes (angles, origin, delivery) are derived from the stone's serial rather than stored,
which keeps 100,000 stones small in memory and still identical from run to run.
"""

from __future__ import annotations

import uuid
from typing import Any

from opus.sandbox.generator import Stone, Supplier

MEDIA_HOST = "https://media.sandbox.invalid"  # .invalid never resolves: nothing leaves the machine
FULL_SHAPE = {"ROUND": "Round Brilliant", "CUSHION MODIFIED": "Cushion Modified Brilliant",
              "PRINCESS": "Princess Cut", "TRILLIANT": "Trilliant Cut", "BAGUETTE": "Straight Baguette"}
MINES = ["Botswana", "Canada", "Russia", "South Africa", "Namibia", "Angola", None, "Unknown"]
POLISHING = ["India", "India", "India", "Belgium", "Israel", "USA", "Thailand"]
LAB_GROWN_ORIGIN = ["India", "China", "USA", None]
GIRDLES = ["Thin - Medium", "Medium", "Medium - Slightly Thick", "Slightly Thick", "Thin - Slightly Thick"]
_ID_NAMESPACE = uuid.UUID("5d3b9a52-0f6c-4c1e-9a7e-3b1f4e2c8d10")


def _derived_id(kind: str, stone: Stone) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{stone.stone_id}"))


def _media(stone: Stone) -> dict[str, Any]:
    base = f"{MEDIA_HOST}/{stone.stone_id}"
    video_mode, image_mode = stone.video_mode, stone.image_mode
    v360 = {"id": _derived_id("v360", stone), "url": f"{base}/v360.html"}
    supplier_link = f"https://supplier{stone.supplier:02d}.sandbox.invalid/video?stock={stone.serial}"
    return {
        "image": f"{base}/still.jpg" if image_mode in ("both", "diamond") else None,
        "cert_image": f"{base}/certificate-image.jpg" if image_mode in ("both", "cert_only") else None,
        "video": f"{base}/video.mp4" if video_mode in ("both", "video") else None,
        # the documented fallbacks: only the certificate's v360, or only the supplier's link
        "diamond_v360": v360 if video_mode == "both" else None,
        "cert_v360": v360 if video_mode in ("both", "v360_only") else None,
        "supplier_video_link": supplier_link if video_mode == "supplier_only" or
        (video_mode == "both" and stone.serial % 3 == 0) else None,
    }


def _certificate(stone: Stone, media: dict[str, Any]) -> dict[str, Any]:
    n = stone.serial
    loupe = (media["cert_v360"] or {}).get("url")
    videos = [{"id": _derived_id("video", stone), "url": media["video"], "loupe360_url": loupe,
               "type": "video"}] if media["video"] else []
    still = media["image"] or media["cert_image"]
    images = [{"id": _derived_id("image", stone), "url": still, "loupe360_url": None, "type": "still",
               "display_index": 0}] if still else []
    return {
        "id": _derived_id("certificate", stone), "lab": stone.lab, "certNumber": stone.cert_number,
        "pdfUrl": f"{MEDIA_HOST}/certificates/{stone.lab}/{stone.cert_number}.pdf",
        "shape": stone.shape, "fullShape": FULL_SHAPE.get(stone.shape, stone.shape.title()),
        "carats": stone.carats, "cut": stone.cut, "polish": stone.polish, "symmetry": stone.symmetry,
        "color": stone.color, "clarity": stone.clarity, "length": stone.length, "width": stone.width,
        "depth": stone.depth, "depthPercentage": stone.depth_pct, "table": stone.table_pct,
        "crownAngle": 33.0 + n % 30 / 10, "crownHeight": 13.0 + n % 40 / 10, "pavAngle": 40.4 + n % 12 / 10,
        "pavHeight": 42.5 + n % 15 / 10, "pavDepth": 42.5 + n % 15 / 10, "verified": n % 10 != 0,
        "treated": False, "girdle": GIRDLES[n % len(GIRDLES)], "culetSize": "None",
        "girdleCondition": "Faceted" if n % 2 else None, "culet_condition": None, "cut_style": None,
        "keyToSymbols": "Crystal, Needle" if stone.clarity.startswith(("SI", "I")) else "Feather",
        "comments": "Additional clouds are not shown." if n % 7 == 0 else None,
        "f_color": stone.f_color, "f_intensity": stone.f_intensity, "f_overtone": stone.f_overtone,
        "colorShade": None if n % 5 else "White", "brown": None, "green": None, "blue": None, "gray": None,
        "mix_tinge": None if n % 9 else "No BGM", "milky": None if n % 4 else "None", "bowtie": None,
        "eyeclean": stone.eye_clean, "starLength": 45.0 + n % 15, "lowerGirdle": 75.0 + n % 10,
        "floInt": stone.flo_text, "floCol": None if stone.flo == "NON" else "Blue",
        "labgrown_type": stone.labgrown_type, "labgrown": stone.cert_labgrown,
        "image": media["cert_image"], "video": None,
        "country_of_origin": LAB_GROWN_ORIGIN[n % 4] if stone.labgrown else MINES[n % len(MINES)],
        "v360": media["cert_v360"], "product_videos": videos, "product_images": images,
    }


def render_item(stone: Stone, supplier: Supplier) -> dict[str, Any]:
    """The item for `stone`, with prices in integer cents as production sends them."""
    n = stone.serial
    media = _media(stone)
    rap_cents = stone.price_cents / (1 + stone.discount / 100)  # list price implied by the discount
    diamond = {
        "id": stone.stone_id, "availability": stone.availability, "HoldId": stone.hold_id,
        "NivodaStockId": f"NIV{100_000_000 + n}", "supplierStockId": f"S{stone.supplier:02d}-{n:07d}",
        "image": media["image"], "video": media["video"], "eyeClean": stone.eye_clean,
        "brown": None, "green": None, "blue": None, "gray": None, "milky": None, "bowtie": None,
        "mine_of_origin": None if stone.labgrown else MINES[n % len(MINES)],
        "supplier_video_link": media["supplier_video_link"], "approval_type": "AUTO" if n % 4 else "MANUAL",
        "final_price": stone.price_cents, "show_measurements": True, "show_certificate_number": n % 50 != 0,
        "return_window": "30 days" if n % 3 else None, "CertificateType": stone.lab, "scs_certificate": None,
        "country_of_polishing": POLISHING[n % len(POLISHING)], "other": None, "v360": media["diamond_v360"],
        "delivery_time": {"express_timeline_applicable": stone.supplier % 3 == 0,
                          "min_business_days": 2 + stone.supplier % 3,
                          "max_business_days": 5 + stone.supplier % 3 + stone.supplier % 4},
        "certificate": _certificate(stone, media),
        "supplier": {"id": supplier.id, "name": supplier.name, "legal_name": supplier.legal_name},
    }
    return {
        "id": stone.offer_id, "price": stone.price_cents, "markup_price": stone.price_cents,
        "diamond_price": stone.diamond_price_cents, "markup_discount": stone.discount,
        "discount": round((stone.diamond_price_cents / rap_cents - 1) * 100, 2),
        "diamond": diamond,
    }
