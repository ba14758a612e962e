"""The GitHub workflows validate against the workflow schema and do what the guide says they do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import WORKFLOW_DIR, guide_text

WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))


def _load(name: str) -> dict[Any, Any]:
    document = yaml.safe_load((WORKFLOW_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _triggers(document: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as True.
    triggers = document.get("on", document.get(True))
    assert isinstance(triggers, dict)
    return triggers


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"pipeline.yml", "deploy.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path: Path) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_push_and_pull_request_run_exactly_make_test() -> None:
    pipeline = _load("pipeline.yml")
    assert {"push", "pull_request", "workflow_dispatch"} <= set(_triggers(pipeline))
    runs = [step["run"].strip() for step in pipeline["jobs"]["test"]["steps"] if "run" in step]
    assert runs == ["make test"]


def test_staging_follows_main_and_production_waits_for_a_manual_run() -> None:
    jobs = _load("pipeline.yml")["jobs"]
    assert jobs["staging"]["needs"] == "test"
    assert "refs/heads/main" in jobs["staging"]["if"]
    assert "push" in jobs["staging"]["if"]
    assert jobs["staging"]["with"]["environment"] == "staging"
    assert jobs["production"]["needs"] == "test"
    assert "workflow_dispatch" in jobs["production"]["if"]
    assert "refs/heads/main" in jobs["production"]["if"]
    assert jobs["production"]["with"]["environment"] == "production"


def test_deploy_runs_in_the_github_environment_and_signs_in_with_openid_connect() -> None:
    deploy = _load("deploy.yml")
    job = deploy["jobs"]["deploy"]
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert deploy["permissions"]["id-token"] == "write"
    login = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("azure/login@"))
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, "OIDC: no client secret"


def test_deploy_provisions_migrates_and_publishes() -> None:
    steps = " ".join(
        str(step.get("run", "")) + str(step.get("uses", "")) for step in _load("deploy.yml")["jobs"]["deploy"]["steps"]
    )
    for expected in ("az deployment sub create", "infra/bicep/main.bicep", "opus db migrate",
                     "Azure/functions-action@", "static-web-apps-cli"):
        assert expected in steps


def test_every_secret_and_variable_is_listed_in_the_guide() -> None:
    used = set()
    for path in WORKFLOWS:
        used |= set(re.findall(r"\$\{\{\s*(?:secrets|vars)\.([A-Z0-9_]+)\s*\}\}", path.read_text(encoding="utf-8")))
    assert used, "the workflows read no secrets or variables"
    guide = guide_text()
    missing = sorted(name for name in used if f"`{name}`" not in guide)
    assert not missing, f"docs/deploy.md does not list {missing}"
