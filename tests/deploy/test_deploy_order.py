"""Deployment details that fail only on Azure, checked here: the PostgreSQL server's children one at a time, a
run deadline that cannot come before the run, and the package without the migration step's build tree."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from deploy_files import BICEP_DIR, MAIN_BICEP, ROOT, modules, parse_bicep


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = resource["config"]
    return config["config"] if "loop_type" in config else config


def test_the_postgres_server_children_are_created_one_after_another() -> None:
    # The flexible server refuses a second operation on its children while one runs.
    resources = parse_bicep(BICEP_DIR / "modules" / "postgres.bicep")["resources"]
    children = [name for name, r in resources.items() if "parent" in _body(r)]
    assert len(children) >= 4
    for before, after in pairwise(children):
        assert _body(resources[after]).get("dependsOn") == [before], f"{after} must wait for {before}"
    loops = [name for name, r in resources.items() if "loop_type" in r["config"]]
    for name in loops:
        assert {"type": "batchSize", "argument": 1} in resources[name]["decorators"], f"{name} must run one by one"


def test_a_deadline_at_or_before_the_run_hour_is_refused_at_validation() -> None:
    alerts = parse_bicep(BICEP_DIR / "modules" / "alerts.bicep")["parameters"]["runDeadlineMinutes"]
    assert {"type": "min_value", "argument": 60} in alerts["decorators"]
    main = parse_bicep(MAIN_BICEP)
    assert modules(MAIN_BICEP)["alerts"]["config"]["params"]["runDeadlineMinutes"] == "runDeadlineMinutes"
    assert "runDeadlineMinutes" in str(main["variables"]["appSettings"]["value"]["RUN_DEADLINE_MINUTES"])


def test_the_package_leaves_out_the_build_tree() -> None:
    ignored = (ROOT / ".funcignore").read_text(encoding="utf-8").split()
    assert "build/" in ignored
