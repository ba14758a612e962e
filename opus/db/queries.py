"""Named SQL queries kept in `.sql` files beside this module.

A file holds blocks that each start with a `-- name: some_name` line; the text up to the next such line is
the query. Parameters are bound by psycopg (`%(name)s`), never formatted in.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import LiteralString

SQL_DIR = Path(__file__).with_name("sql")
_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a file's text into {name: query}; a repeated name is an error, not a silent override."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        if not body:
            raise ValueError(f"query {name!r} is empty")
        queries[name] = body
    return queries


class Queries:
    """The queries of one file, as attributes: `Q = Queries("queue"); conn.execute(Q.receive, params)`."""

    def __init__(self, file_stem: str) -> None:
        self._queries = _load(file_stem)
        self._stem = file_stem

    def __getattr__(self, name: str) -> LiteralString:
        try:
            # The text comes from files shipped with the package, never from input: safe to treat as literal.
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no query {name!r} in {self._stem}.sql") from None

    def names(self) -> list[str]:
        return sorted(self._queries)


@cache
def _load(file_stem: str) -> dict[str, str]:
    return parse_queries((SQL_DIR / f"{file_stem}.sql").read_text(encoding="utf-8"))
