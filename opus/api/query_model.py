"""A pydantic model of query parameters, read straight from the query string.

FastAPI reads a `Annotated[Model, Query()]` parameter field by field (aliases, sequence checks, extras) in Python
on every request: for the search's 25 parameters that was an eighth of a request's Python time, more than the
validation itself. `QueryModel` groups the query string once and lets pydantic-core validate it, with FastAPI's
meaning kept: a list field takes every occurrence, any other field the last, an unknown parameter is the model's
to refuse, and a problem is a `RequestValidationError` located at `("query", field)`. The OpenAPI document lists
the same parameters FastAPI would have written for the model (`parameters()`, added by opus/api/openapi.py to
every operation that depends on a QueryModel), built when the document is first asked for, not at import.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar, get_origin
from urllib.parse import parse_qsl

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class QueryModel(Generic[M]):
    """Route dependency: the request's query string validated as `model`."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._lists = frozenset(
            name for name, field in model.model_fields.items() if get_origin(field.annotation) is list)
        self._parameters: list[dict[str, Any]] | None = None

    async def __call__(self, request: Request) -> M:
        return self.parse(request.scope.get("query_string", b""))

    def parse(self, query_string: bytes) -> M:
        values: dict[str, Any] = {}
        # As Starlette reads a query string: latin-1 bytes, percent-decoded as UTF-8, blank values kept.
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name in self._lists:
                values.setdefault(name, []).append(value)
            else:
                values[name] = value
        try:
            return self.model.model_validate(values)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
            ) from None

    def parameters(self) -> list[dict[str, Any]]:
        """The operation's `parameters` as FastAPI documents `Annotated[model, Query()]` (its `$ref`s name the
        schemas of the model's enums, which the app's own document holds when a response model uses them)."""
        if self._parameters is None:
            def endpoint(query: BaseModel) -> None:
                """Documented only, never served."""

            # Set here, not written in the signature: annotations are strings in this module.
            endpoint.__annotations__ = {"query": Annotated[self.model, Query()], "return": None}
            side = FastAPI()
            side.get("/")(endpoint)
            self._parameters = side.openapi()["paths"]["/"]["get"]["parameters"]
        return self._parameters
