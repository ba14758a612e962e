"""What the workbook and the alert rules query is what the code logs: every `message == "..."` names a logger call
in opus/, and every `customDimensions.X` of those lines is an `extra` key of such a call (read from the source
with ast, so a renamed message or key fails here instead of leaving a panel empty)."""

from __future__ import annotations

import ast
import json
import re
from functools import cache

import pytest
from deploy_files import BICEP_DIR, ROOT

LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
WORKBOOK = BICEP_DIR / "modules" / "workbook.json"
ALERTS = BICEP_DIR / "modules" / "alerts.bicep"


def _dict_keys(node: ast.expr, functions: dict[str, ast.FunctionDef]) -> set[str]:
    """String keys of an `extra=` value: a dict literal (with `**helper(...)` spreads of this module's helpers
    resolved), or a call of such a helper."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
        returned = [n.value for n in ast.walk(functions[node.func.id]) if isinstance(n, ast.Return) and n.value]
        return set().union(*(_dict_keys(value, functions) for value in returned))
    if not isinstance(node, ast.Dict):
        return set()
    keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:
            keys |= _dict_keys(value, functions)
    return keys


@cache
def logged() -> dict[str, frozenset[str]]:
    """Message -> the extra keys some logger call in opus/ gives it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "opus").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            func = call.func
            if not (isinstance(func, ast.Attribute) and func.attr in LOG_METHODS and call.args):
                continue
            first = call.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            keys = found.setdefault(first.value, set())
            for keyword in call.keywords:
                if keyword.arg == "extra":
                    keys |= _dict_keys(keyword.value, functions)
    return {message: frozenset(keys) for message, keys in found.items()}


def _queries() -> list[tuple[str, str]]:
    """(where, query) of every log query the workbook and the alert rules run."""
    queries = []
    for item in json.loads(WORKBOOK.read_text(encoding="utf-8"))["items"]:
        query = item.get("content", {}).get("query")
        if query:
            queries.append((f"workbook.json:{item['name']}", query))
    for name, query in re.findall(r"(?:var (\w+) = |query: )'(.*)'$", ALERTS.read_text(encoding="utf-8"), re.M):
        queries.append((f"alerts.bicep:{name or 'query'}", query))
    return queries


def _messages(query: str) -> set[str]:
    found = set(re.findall(r'message == "([^"]+)"', query))
    for group in re.findall(r"message in \(([^)]*)\)", query):
        found |= set(re.findall(r'"([^"]+)"', group))
    return found


def _dimensions(query: str) -> set[str]:
    return set(re.findall(r"customDimensions\.(\w+)", query)) | set(
        re.findall(r"""customDimensions\[["'](\w+)["']\]""", query))


def test_the_queries_are_found() -> None:
    where = {w for w, _ in _queries()}
    assert {"workbook.json:stones", "workbook.json:consolidation", "alerts.bicep:runLateQuery"} <= where


@pytest.mark.parametrize(("where", "query"), _queries(), ids=[w for w, _ in _queries()])
def test_every_queried_message_is_logged_with_the_dimensions_read(where: str, query: str) -> None:
    if query.lstrip().startswith("requests"):
        return  # the Functions host's own request telemetry, not our log lines
    messages = _messages(query)
    unknown = sorted(messages - set(logged()))
    assert not unknown, f"{where} reads log lines opus/ never writes: {unknown}"
    # Keys read alongside a message filter must come with one of those messages; keys read across all lines
    # (no message filter) must come with some line.
    sources = [logged()[m] for m in messages] if messages else list(logged().values())
    available = frozenset().union(*sources)
    missing = sorted(_dimensions(query) - available)
    assert not missing, f"{where} reads customDimensions {missing}, which none of {sorted(messages)} carries"


def test_the_reader_resolves_extra_helpers() -> None:
    # `page stored` spreads `_ctx(item)`: the test must see through it, or it proves nothing about them.
    assert {"run_id", "partition", "offset", "feed", "stones", "changed", "attempt"} <= logged()["page stored"]


def test_a_message_the_code_does_not_log_is_caught() -> None:
    query = 'traces | where message == "page saved" | summarize sum(toint(customDimensions.rows))'
    assert _messages(query) - set(logged()) == {"page saved"}
    assert _dimensions(query) - logged()["consolidation slice"] == {"rows"}




def test_the_late_run_alert_looks_at_each_feed() -> None:
    # Two feeds run each night: one completed run must not hide the other's failure.
    (query,) = [q for w, q in _queries() if w == "alerts.bicep:runLateQuery"]
    assert "customDimensions.feed" in query
    assert "leftanti" in query
    assert "feed" in logged()["run completed"]
    assert "feed" in logged()["run failed"]


def test_the_failure_alert_keeps_failures_without_a_numeric_result_code() -> None:
    (query,) = [q for w, q in _queries() if q.startswith("requests | where success == false")]
    assert "toint(resultCode)" not in query
    assert 'not(tostring(resultCode) startswith "4")' in query
