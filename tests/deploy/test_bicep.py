"""Every Bicep file parses; modules, parameters and parameter files agree with one another."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_files import (
    BICEP_DIR,
    MAIN_BICEP,
    PARAMETER_FILES,
    bicep_files,
    modules,
    parameter_file_names,
    parameters,
    parse_bicep,
    required_parameters,
    workflow_text,
)


def test_there_is_a_main_template_and_modules() -> None:
    assert MAIN_BICEP.exists()
    assert len(bicep_files()) >= 10, "main.bicep plus one module per resource family"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP_DIR)))
def test_bicep_parses(path: Path) -> None:
    tree = parse_bicep(path)
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_main_deploys_at_subscription_scope() -> None:
    # `az deployment sub create` in the guide and the workflow needs it.
    assert parse_bicep(MAIN_BICEP)["globals"]["scope"]["value"] == "subscription"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(BICEP_DIR)))
def test_modules_receive_exactly_the_parameters_they_declare(path: Path) -> None:
    for name, module in modules(path).items():
        target = (path.parent / module["detail"]["path"]).resolve()
        assert target.exists(), f"module {name}: {target} is missing"
        passed = set(module["config"].get("params") or {})
        declared = set(parameters(target))
        assert passed <= declared, f"module {name} passes undeclared {sorted(passed - declared)}"
        missing = required_parameters(target) - passed
        assert not missing, f"module {name} leaves required {sorted(missing)} unset"


def _workflow_supplied() -> set[str]:
    """Parameters the deploy workflow writes into its secret parameter file (`--arg name`)."""
    text = workflow_text("deploy.yml")
    step = text[text.index("name: Write the secret parameters"):text.index("name: Provision")]
    return set(re.findall(r"--arg (\w+) ", step))


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameter_file_names_only_declared_parameters(path: Path) -> None:
    unknown = parameter_file_names(path) - set(parameters(MAIN_BICEP))
    assert not unknown, f"{path.name} names parameters main.bicep does not declare: {sorted(unknown)}"


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_every_required_parameter_is_supplied(path: Path) -> None:
    supplied = parameter_file_names(path) | _workflow_supplied()
    missing = required_parameters(MAIN_BICEP) - supplied
    assert not missing, f"{path.name} plus the workflow leave {sorted(missing)} unset"


def test_workflow_supplies_only_declared_parameters() -> None:
    unknown = _workflow_supplied() - set(parameters(MAIN_BICEP))
    assert not unknown, f"deploy.yml passes undeclared {sorted(unknown)}"


def test_there_is_one_parameter_file_per_environment() -> None:
    assert {p.name for p in PARAMETER_FILES} == {"staging.parameters.json", "production.parameters.json"}


def test_secrets_are_secure_parameters() -> None:
    declared = parameters(MAIN_BICEP)
    for name in ("postgresAdminPassword", "nivodaPassword", "hmacSecrets", "resendApiKey"):
        decorators = {d["type"] for d in declared[name]["decorators"]}
        assert "secure" in decorators, f"{name} must be @secure()"
