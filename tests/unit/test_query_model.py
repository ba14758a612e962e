"""`QueryModel` reads a query string as FastAPI's `Annotated[Model, Query()]` does: the same values, the same
refusals at the same locations; and the app documents the route with the parameters FastAPI would write."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient

from opus.api.app import create_app
from opus.api.query_model import QueryModel
from opus.api.schemas.diamonds import SearchQuery
from opus.config import load_settings

SEARCH_QUERY = QueryModel(SearchQuery)


def _apps() -> tuple[TestClient, TestClient]:
    by_fastapi, by_query_model = FastAPI(), FastAPI()

    @by_fastapi.get("/")
    def fastapi_reads(query: Annotated[SearchQuery, Query()]) -> dict[str, Any]:
        return query.model_dump(mode="json")

    @by_query_model.get("/")
    def query_model_reads(query: Annotated[SearchQuery, Depends(SEARCH_QUERY)]) -> dict[str, Any]:
        return query.model_dump(mode="json")

    return TestClient(by_fastapi), TestClient(by_query_model)


CLIENTS = _apps()

QUERIES = [
    "", "shapes=ROUND", "shapes=round,oval&shapes=Cushion", "shapes=ROUND&shapes=", "colors=D&colors=E&colors=D",
    "carat_min=0.5&carat_max=1.25", "carat_min=2&carat_max=1", "carat_min=", "carat_min=abc", "carat_min=1e999",
    "limit=5&limit=7", "limit=0", "limit=101", "limit=%2B5", "lab_grown=true", "lab_grown=maybe", "lab_grown=0",
    "sort=carats&order=desc", "sort=nonsense", "availability=on hold", "availability=GONE", "unknown=1",
    "price_min=10&price_min=", "next=" + "A" * 600, "feed=nivoda&feed=other", "shapes=%E2%9C%93", "count=exact",
    "shapes=a%2Cb", "colors=%20d%20", "status=all&status=deleted", "limit=1&&&=&shapes",
]


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_string_means_what_it_means_to_fastapi(query: str) -> None:
    by_fastapi, by_query_model = CLIENTS
    expected, got = by_fastapi.get(f"/?{query}"), by_query_model.get(f"/?{query}")
    assert got.status_code == expected.status_code
    if expected.status_code == 200:
        assert got.json() == expected.json()
    else:
        assert [(e["loc"], e["type"]) for e in got.json()["detail"]] == [
            (e["loc"], e["type"]) for e in expected.json()["detail"]]


def test_the_search_is_documented_with_the_parameters_fastapi_would_write() -> None:
    by_fastapi, _ = CLIENTS
    app = create_app(db=None, settings=load_settings(), feed=None, control=None)  # type: ignore[arg-type]
    documented = app.openapi()["paths"]["/api/v2/diamonds"]["get"]["parameters"]
    assert documented == by_fastapi.app.openapi()["paths"]["/"]["get"]["parameters"]  # type: ignore[attr-defined]
    assert {p["name"] for p in documented} == set(SearchQuery.model_fields)
