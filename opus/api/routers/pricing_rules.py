"""Pricing rules: read (read scope) and change (admin scope); every change reprices the active stones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from opus.api.context import ApiContext, get_context
from opus.api.schemas.common import MAX_BIGINT, Digits, error_responses
from opus.api.schemas.pricing import PricingRuleIn, PricingRuleOut, RuleChanged, RuleDeleted
from opus.api.security import ADMIN, READ
from opus.api.services import pricing_rules as rules

router = APIRouter(prefix="/pricing-rules", tags=["pricing rules"])
Ctx = Annotated[ApiContext, Depends(get_context)]
RuleId = Annotated[int, Path(ge=1, le=MAX_BIGINT, description="The rule's id."), Digits]


@router.get("", response_model=list[PricingRuleOut], dependencies=[Depends(READ)], summary="List pricing rules",
            description="Every rule, in the order they are tried (priority, then id).")
def list_rules(ctx: Ctx) -> Any:
    return rules.list_rules(ctx)


@router.get("/{rule_id}", response_model=PricingRuleOut, dependencies=[Depends(READ)],
            responses=error_responses(404), summary="Get a pricing rule", description="One rule by id.")
def get_rule(ctx: Ctx, rule_id: RuleId) -> Any:
    return rules.get_rule(ctx, rule_id)


@router.post("", response_model=RuleChanged, status_code=201, dependencies=[Depends(ADMIN)],
             responses=error_responses(409), summary="Create a pricing rule",
             description="Store a rule and reprice the active stones; 409 when its priority is taken.")
def create_rule(ctx: Ctx, rule: PricingRuleIn) -> RuleChanged:
    row, repriced = rules.create_rule(ctx, rule)
    return RuleChanged(rule=PricingRuleOut.model_validate(row), repriced=repriced)


@router.put("/{rule_id}", response_model=RuleChanged, dependencies=[Depends(ADMIN)],
            responses=error_responses(404, 409), summary="Replace a pricing rule",
            description="Replace every field of a rule and reprice the active stones.")
def replace_rule(ctx: Ctx, rule_id: RuleId, rule: PricingRuleIn) -> RuleChanged:
    row, repriced = rules.replace_rule(ctx, rule_id, rule)
    return RuleChanged(rule=PricingRuleOut.model_validate(row), repriced=repriced)


@router.delete("/{rule_id}", response_model=RuleDeleted, dependencies=[Depends(ADMIN)],
               responses=error_responses(404), summary="Delete a pricing rule",
               description="Delete a rule and reprice the active stones it priced (and any others that change).")
def delete_rule(ctx: Ctx, rule_id: RuleId) -> RuleDeleted:
    return RuleDeleted(id=rule_id, repriced=rules.delete_rule(ctx, rule_id))
