"""Schema rules that SDL alone cannot state: the availability scalar, and staging's field rejections.

Staging answers a query that selects certain enum-typed certificate fields with an enum error naming the
field (pitfall 6). The rule below gives the same shape: a validation error, no data, the field named.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    EnumValueNode,
    FieldNode,
    GraphQLError,
    GraphQLScalarType,
    GraphQLSchema,
    StringValueNode,
    ValidationRule,
    ValueNode,
)

STAGING_REJECTED = {"Certificate": frozenset({"clarity", "floInt", "floCol", "labgrown_type"})}
AVAILABILITY_VALUES = {"AVAILABLE": "AVAILABLE", "ON HOLD": "ON HOLD", "ON_HOLD": "ON HOLD", "HOLD": "ON HOLD",
                       "SOLD": "SOLD", "MEMO": "MEMO"}


class StagingRejectedFields(ValidationRule):
    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.context.get_parent_type()
        name = node.name.value
        if parent is not None and name in STAGING_REJECTED.get(parent.name, ()):
            self.report_error(GraphQLError(
                f"Enum \"{parent.name}.{name}\" cannot represent value: staging rejects field '{name}'"
                f" on type '{parent.name}'", node))


def _availability(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError(f"Availability must be a string or a name, got {value!r}")
    canonical = AVAILABILITY_VALUES.get(value.strip().upper())
    if canonical is None:
        raise GraphQLError(f"Availability cannot represent value {value!r};"
                           f" expected one of AVAILABLE, ON HOLD, ON_HOLD, SOLD, MEMO")
    return canonical


def _availability_literal(node: ValueNode, _variables: Any = None) -> str:
    if isinstance(node, StringValueNode | EnumValueNode):
        return _availability(node.value)
    raise GraphQLError("Availability must be a string or a name")


def install_scalars(schema: GraphQLSchema) -> None:
    scalar = schema.get_type("Availability")
    assert isinstance(scalar, GraphQLScalarType)
    # graphql-core 3.3 coerces through coerce_input_*; parse_* are its deprecated names, kept in step
    scalar.coerce_input_value = _availability
    scalar.coerce_input_literal = _availability_literal
    scalar.parse_value = _availability  # type: ignore[method-assign]
    scalar.parse_literal = _availability_literal  # type: ignore[method-assign,assignment]
