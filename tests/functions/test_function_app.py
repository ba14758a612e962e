"""function_app.py as the worker's indexer sees it: every function, its trigger, bindings and settings; and an import
that needs no Azure setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure_stack import FUNCTIONS, REGISTERED

ROOT = Path(__file__).resolve().parents[2]


def _functions() -> dict[str, Any]:
    return FUNCTIONS


def _bindings(function: Any) -> dict[str, dict[str, Any]]:
    return {b.get_dict_repr()["type"]: b.get_dict_repr() for b in function.get_bindings()}


def test_the_app_lists_every_function_once() -> None:
    names = [f.get_function_name() for f in REGISTERED]

    assert sorted(names) == sorted(
        ["nightly", "housekeeping", "work_items", "consolidate", "run_orchestrator", "settle_run", "fail_run",
         "http_api"]
    )


@pytest.mark.parametrize(("name", "setting"), [("nightly", "%OPUS_SCHEDULE%"),
                                               ("housekeeping", "%OPUS_HOUSEKEEPING_SCHEDULE%")])
def test_timers_read_their_schedule_from_a_setting_and_use_the_monitor(name: str, setting: str) -> None:
    timer = _bindings(_functions()[name])["timerTrigger"]

    assert timer["schedule"] == setting
    assert timer["useMonitor"] is True


def test_the_nightly_timer_gets_a_durable_client_to_start_orchestrations() -> None:
    assert set(_bindings(_functions()["nightly"])) == {"timerTrigger", "durableClient"}
    assert set(_bindings(_functions()["housekeeping"])) == {"timerTrigger"}


@pytest.mark.parametrize(("name", "queue", "durable"), [("work_items", "work-items", True),
                                                        ("consolidate", "consolidate", False)])
def test_service_bus_functions_listen_on_their_queue_through_the_connection_setting(
    name: str, queue: str, durable: bool
) -> None:
    bindings = _bindings(_functions()[name])
    trigger = bindings["serviceBusTrigger"]

    assert trigger["queueName"] == queue
    assert trigger["connection"] == "ServiceBusConnection"
    # Messages settle by how the function ends: the host's autoCompleteMessages (host.json), not per function.
    assert "autoCompleteMessages" not in trigger
    assert ("durableClient" in bindings) is durable


def test_the_orchestrator_and_its_activities_are_registered_under_the_names_it_calls() -> None:
    functions = _functions()

    assert set(_bindings(functions["run_orchestrator"])) == {"orchestrationTrigger"}
    assert set(_bindings(functions["settle_run"])) == {"activityTrigger"}
    assert set(_bindings(functions["fail_run"])) == {"activityTrigger"}


def test_one_anonymous_catch_all_route_carries_the_whole_api_with_a_durable_client() -> None:
    http_functions = [f for f in _functions().values() if "httpTrigger" in _bindings(f)]

    assert [f.get_function_name() for f in http_functions] == ["http_api"]
    bindings = _bindings(http_functions[0])
    trigger = bindings["httpTrigger"]
    assert trigger["route"] == "{*path}"
    assert trigger["authLevel"] == func.AuthLevel.ANONYMOUS
    assert {func.HttpMethod(m).value for m in trigger["methods"]} >= {"GET", "POST", "PUT", "DELETE", "OPTIONS"}
    assert "durableClient" in bindings


def test_the_durable_functions_are_coroutines() -> None:
    import inspect

    for name in ("nightly", "work_items", "http_api"):
        raw = _functions()[name].get_user_function().client_function
        assert inspect.iscoroutinefunction(raw), name


def test_importing_the_app_needs_no_azure_setting_and_connects_to_nothing(tmp_path: Path) -> None:
    # A bare environment in an empty folder: no .env, no connection strings, no database.
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    script = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('connected at import')\n"
        "socket.socket.connect = refuse\n"
        "import function_app\n"
        "print(len(function_app.app.get_functions()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8"
