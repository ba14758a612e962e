"""The deployment files read as data: Bicep parsed by pycep, parameter files, workflows, the guide."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN_BICEP = BICEP_DIR / "main.bicep"
PARAMETER_FILES = sorted((BICEP_DIR / "parameters").glob("*.parameters.json"))
WORKFLOW_DIR = ROOT / ".github" / "workflows"
GUIDE = ROOT / "docs" / "deploy.md"
LOCAL_SETTINGS_EXAMPLE = ROOT / "local.settings.example.json"

KEY_VAULT_REFERENCE = re.compile(
    r"^@Microsoft\.KeyVault\(SecretUri=\$\{keyVault\.outputs\.uri\}secrets/([a-z0-9-]+)/\)$"
)


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def parse_bicep(path: Path) -> dict[str, Any]:
    """The pycep tree of one file; raises on a syntax error."""
    tree: dict[str, Any] = BicepParser().parse(text=path.read_text(encoding="utf-8"))
    return tree


def parameters(path: Path) -> dict[str, dict[str, Any]]:
    return dict(parse_bicep(path).get("parameters") or {})


def required_parameters(path: Path) -> set[str]:
    """Parameters without a default: a deployment must supply them."""
    return {name for name, spec in parameters(path).items() if spec.get("default") is None}


def app_settings() -> dict[str, Any]:
    """The `appSettings` object main.bicep hands to the Function App, as name -> value (strings or expressions)."""
    value = parse_bicep(MAIN_BICEP)["variables"]["appSettings"]["value"]
    assert isinstance(value, dict)
    return value


def modules(path: Path) -> dict[str, dict[str, Any]]:
    return dict(parse_bicep(path).get("modules") or {})


def resource_config(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's body; pycep nests it one level deeper under a condition (`= if (...) {...}`)."""
    config: dict[str, Any] = resource["config"]
    return config["config"] if "condition" in config else config


def parameter_file_names(path: Path) -> set[str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return set(document["parameters"])


def workflow_text(name: str) -> str:
    return (WORKFLOW_DIR / name).read_text(encoding="utf-8")


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


ACCEPTED_ROW = re.compile(r"^\|\s*(CKV2?_[A-Z]+_\d+)\s*\|\s*`([^`]+)`\s*\|")


def accepted_findings() -> set[tuple[str, str]]:
    """(check id, resource) pairs of the guide's table of accepted checkov findings."""
    found = set()
    for line in guide_text().splitlines():
        match = ACCEPTED_ROW.match(line.strip())
        if match:
            found.add((match.group(1), match.group(2)))
    return found
