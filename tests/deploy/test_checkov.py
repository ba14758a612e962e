"""checkov passes on infra/bicep, offline, apart from the findings docs/deploy.md lists and justifies."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

from deploy_files import BICEP_DIR, ROOT, accepted_findings

# checkov pins versions of packages the project uses, so it lives in its own virtual environment
# (`make deploy-check` creates .venv-tools); OPUS_CHECKOV names another binary.
CHECKOV = Path(os.environ.get("OPUS_CHECKOV", ROOT / ".venv-tools" / "bin" / "checkov"))


@cache
def _failed_checks() -> frozenset[tuple[str, str]]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make deploy-check`, which installs it"
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}  # offline: no download of guideline mappings
    result = subprocess.run(
        [str(CHECKOV), "-d", str(BICEP_DIR), "--framework", "bicep", "--compact", "--quiet", "--output", "json"],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = set()
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, "checkov could not parse a Bicep file"
        for check in report["results"]["failed_checks"]:
            failed.add((check["check_id"], f"{Path(check['file_path']).name}:{check['resource']}"))
    return frozenset(failed)


def test_checkov_finds_nothing_that_is_not_accepted() -> None:
    unaccepted = sorted(_failed_checks() - accepted_findings())
    assert not unaccepted, f"checkov findings not listed in docs/deploy.md: {unaccepted}"


def test_every_accepted_finding_still_occurs() -> None:
    # A fixed finding leaves the list, so the list stays the truth.
    stale = sorted(accepted_findings() - _failed_checks())
    assert not stale, f"docs/deploy.md accepts findings checkov no longer reports: {stale}"
