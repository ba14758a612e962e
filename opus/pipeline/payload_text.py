"""Reading a raw payload that the claim sent as text (`payload::text`), in whichever process maps it: no I/O and no
database driver, so that consolidation's worker processes import little."""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

# orjson reads integers beyond 64 bits as floats, where the standard parser keeps them exact; a run of 19 digits
# anywhere (a string's digits too) sends the payload to the standard parser. Tested by mapping every digit to 0 and
# looking for 19 zeros: two C passes, several times cheaper than a regular expression over a 3 KB payload.
_DIGITS_TO_ZERO: Final = str.maketrans("123456789", "000000000")
_LONG_DIGITS: Final = "0" * 19


def parse_payload(text: str) -> Any:
    """A raw payload read as text (`payload::text`): the same value psycopg's jsonb loader (json.loads) gives,
    parsed about four times faster."""
    if _LONG_DIGITS not in text.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # e.g. a number beyond a double's range, which json.loads reads as inf
    return json.loads(text)
