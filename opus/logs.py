"""Log formatting that keeps what `extra={...}` carries (run, partition, counts) instead of dropping it.

The standard formatter prints only the message; every Opus log line puts its facts in `extra`, so this formatter
appends them as `key=value` pairs, in the order they were given. Values with spaces or quotes are quoted.
"""

from __future__ import annotations

import json
import logging
import sys

# The attributes every LogRecord has: anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def record_extra(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed as `extra`, in its order."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"=" for c in text):
        return json.dumps(text)
    return text


class ExtraFormatter(logging.Formatter):
    """A `logging.Formatter` that appends the record's extra attributes as `key=value` pairs."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = " ".join(f"{key}={_value(value)}" for key, value in record_extra(record).items())
        if not pairs:
            return line
        # The traceback, if any, stays last: the pairs belong to the message line.
        head, sep, tail = line.partition("\n")
        return f"{head} {pairs}{sep}{tail}"


def use_extra_formatter(handlers: list[logging.Handler], fmt: str | None = None) -> None:
    """Give each handler an ExtraFormatter (keeping `fmt`, or the handler's own format string)."""
    for handler in handlers:
        own = handler.formatter._fmt if handler.formatter is not None else None
        handler.setFormatter(ExtraFormatter(fmt or own))


def configure_logging(level: str | int = "INFO") -> None:
    """The process's logging as every `opus` process has it: one stderr handler whose lines keep the extras.

    Called by the CLI, and by each `opus serve` API helper process, which starts from a fresh interpreter.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ExtraFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, handlers=[handler])
    # One line per feed request drowns everything else; our client logs what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
