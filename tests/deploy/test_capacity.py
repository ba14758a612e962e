"""The deployed sizes hold enough Nivoda requests in flight to use the rate limit, and the PostgreSQL connections
they can open fit the server: the derivation docs/deploy.md "Sizes" gives, checked against the files themselves."""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from deploy_files import MAIN_BICEP, PARAMETER_FILES, ROOT, app_settings, parameters, parse_bicep

# max_connections less the 15 the service reserves for itself (Azure Database for PostgreSQL flexible server,
# "Limits": B1ms 50, B2s 429).
USER_CONNECTIONS = {"Standard_B1ms": 35, "Standard_B2s": 414}
# Instances of the function groups besides `work_item` while a run pages: http (the always-ready one and one more),
# durable, consolidate, and the two timers. Each opens at most PG_POOL_MAX connections.
OTHER_INSTANCES = 6
# An operator's psql or `opus db migrate`, and the workflow's migration step.
OPERATOR_CONNECTIONS = 2


def _documented_latency_s() -> float:
    """Nivoda's mean latency as README.md states it ("a mean near 2.1 s"): the one source of that figure."""
    match = re.search(r"a mean near ([0-9.]+) s", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md no longer states Nivoda's mean latency"
    return float(match.group(1))


def _host_service_bus() -> dict[str, Any]:
    extensions = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]
    service_bus: dict[str, Any] = extensions["serviceBus"]
    return service_bus


def _deployed(path: Path) -> dict[str, Any]:
    """main.bicep's parameters as one parameter file deploys them: the file's values over the defaults."""
    values = {name: spec.get("default") for name, spec in parameters(MAIN_BICEP).items()}
    document = json.loads(path.read_text(encoding="utf-8"))
    values.update({name: entry["value"] for name, entry in document["parameters"].items()})
    return values


def _enabled_feeds() -> int:
    feeds_file = ROOT / str(app_settings()["FEEDS_FILE"])
    feeds = tomllib.loads(feeds_file.read_text(encoding="utf-8"))["feeds"]
    return sum(1 for feed in feeds.values() if feed.get("enabled", True))


def _against_production_nivoda() -> list[Path]:
    return [p for p in PARAMETER_FILES if _deployed(p)["nivodaStaging"] is False]


def test_the_requests_in_flight_settings_all_follow_max_workers() -> None:
    settings = app_settings()
    for name in ("MAX_WORKERS", "DENSITY_SCAN_PARALLELISM", "WORKER_CONCURRENCY"):
        value = settings[name]
        assert value == {"function": {"type": "string", "parameters": {"value_to_convert": "maxWorkers"}}}, (
            f"{name} must be string(maxWorkers), the requests in flight; it is {value!r}"
        )


def test_an_environment_against_production_nivoda_is_checked() -> None:
    assert _against_production_nivoda(), "no parameter file deploys against the production Nivoda"


@pytest.mark.parametrize("path", _against_production_nivoda(), ids=lambda p: p.name)
def test_requests_in_flight_reach_ninety_percent_of_the_rate_limit(path: Path) -> None:
    # Little's law: a rate of 0.9 x the limit at the mean latency needs that many requests open at once.
    deployed = _deployed(path)
    rate = float(deployed["nivodaRateLimitPerS"])
    needed = math.ceil(0.9 * rate * _documented_latency_s())
    per_instance = int(_host_service_bus()["maxConcurrentCalls"])
    assert deployed["maxWorkers"] >= needed, f"{path.name}: {deployed['maxWorkers']} partitions < {needed} in flight"
    assert deployed["functionMaximumInstances"] * per_instance >= needed, (
        f"{path.name}: instances x maxConcurrentCalls cannot hold {needed} pages at once"
    )


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_the_connections_the_app_can_open_fit_the_server(path: Path) -> None:
    # Instances of `work_item` follow the queue depth: one message per partition of each feed's run, handled
    # maxConcurrentCalls at a time per instance.
    deployed = _deployed(path)
    per_instance = int(_host_service_bus()["maxConcurrentCalls"])
    work_instances = math.ceil(_enabled_feeds() * deployed["maxWorkers"] / per_instance)
    assert work_instances <= deployed["functionMaximumInstances"], f"{path.name}: the scale limit caps the pages"
    connections = (work_instances + OTHER_INSTANCES) * deployed["pgPoolMax"] + OPERATOR_CONNECTIONS
    limit = USER_CONNECTIONS[deployed["postgresSkuName"]]
    assert connections <= limit, f"{path.name}: up to {connections} connections, the server takes {limit}"


def test_the_flex_plan_minimum_instance_count_is_enforced() -> None:
    # Flex Consumption refuses maximumInstanceCount below 40; a parameter file with less would not deploy.
    module = parse_bicep(MAIN_BICEP.parent / "modules" / "functionapp.bicep")["parameters"]["maximumInstanceCount"]
    floors = [d["argument"] for d in module["decorators"] if d["type"] == "min_value"]
    assert floors == [40]
    for path in PARAMETER_FILES:
        assert _deployed(path)["functionMaximumInstances"] >= 40, path.name
