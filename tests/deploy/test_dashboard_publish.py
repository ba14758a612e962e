"""The deploy workflow publishes the dashboard as the dashboard reads itself: the settings file it writes is the one
index.html loads, with the key api.js reads, holding the API's origin; and the vendored files index.html loads are
built before the upload."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from deploy_files import MAIN_BICEP, ROOT, WORKFLOW_DIR, parse_bicep

DASHBOARD = ROOT / "static_dashboard"
VENDOR_TARGET = "static_dashboard/vendor/uPlot.iife.min.js"
ORIGIN = "https://func-opus-staging-abc123.azurewebsites.net"


def _publish_step() -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOW_DIR / "deploy.yml").read_text(encoding="utf-8"))
    steps = document["jobs"]["deploy"]["steps"]
    step: dict[str, Any] = next(s for s in steps if s.get("name") == "Publish the dashboard")
    return step


def _commands(script: str) -> list[str]:
    """The script's commands, continuation lines joined."""
    return [c.strip() for c in script.replace("\\\n", " ").splitlines() if c.strip() and not c.strip().startswith("#")]


def _written_files(script: str) -> dict[str, str]:
    """static_dashboard/<file> -> the command that writes it."""
    written = {}
    for command in _commands(script):
        match = re.search(r">\s*(static_dashboard/\S+)", command)
        if match:
            written[match.group(1)] = command
    return written


def _scripts_index_loads() -> set[str]:
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    return set(re.findall(r'<script[^>]*\bsrc="([^"]+)"', html))


def _config_key_api_reads() -> str:
    keys = set(re.findall(r"OPUS_CONFIG\.(\w+)", (DASHBOARD / "js" / "api.js").read_text(encoding="utf-8")))
    assert len(keys) == 1, f"api.js reads {sorted(keys)} of OPUS_CONFIG"
    return keys.pop()


def _evaluate_config(path: Path) -> Any:
    """window.OPUS_CONFIG as a browser would have it after loading `path`."""
    script = (
        "const vm = require('vm'); const fs = require('fs'); const ctx = {window: {}};"
        "vm.runInNewContext(fs.readFileSync(process.argv[1], 'utf8'), ctx);"
        "process.stdout.write(JSON.stringify(ctx.window.OPUS_CONFIG));"
    )
    result = subprocess.run(["node", "-e", script, str(path)], capture_output=True, text=True, check=True)
    return yaml.safe_load(result.stdout)


def test_the_workflow_writes_the_settings_file_index_html_loads() -> None:
    written = _written_files(_publish_step()["run"])
    assert list(written) == ["static_dashboard/config.js"], f"the publish step writes {sorted(written)}"
    assert "config.js" in _scripts_index_loads()


def test_the_settings_file_written_holds_the_api_origin_under_the_key_api_js_reads(tmp_path: Path) -> None:
    step = _publish_step()
    (command,) = _written_files(step["run"]).values()
    (tmp_path / "static_dashboard").mkdir()
    subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path, check=True,
                   env={"PATH": "/usr/bin:/bin", "API_ORIGIN": ORIGIN})
    config = _evaluate_config(tmp_path / "static_dashboard" / "config.js")
    assert config == {_config_key_api_reads(): ORIGIN}


def test_the_origin_comes_from_the_origin_only_output() -> None:
    step = _publish_step()
    assert step["env"]["API_ORIGIN"] == "${{ steps.provision.outputs.function_app_url }}"
    outputs = parse_bicep(MAIN_BICEP)["outputs"]
    assert "functionAppUrl" in outputs
    provision = (WORKFLOW_DIR / "deploy.yml").read_text(encoding="utf-8")
    assert re.search(r"for name in [^;]*\bfunctionAppUrl\b", provision), "the provision step must export it"
    # The dashboard adds /api/v2 itself: the origin has no path.
    assert urlsplit(ORIGIN).path == ""


def test_the_vendored_files_index_html_loads_are_built_before_the_upload() -> None:
    commands = _commands(_publish_step()["run"])
    build = next(i for i, c in enumerate(commands) if c == f"make {VENDOR_TARGET}")
    upload = next(i for i, c in enumerate(commands) if "static-web-apps-cli" in c and " deploy " in c)
    assert build < upload
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    vendored = set(re.findall(r'(?:src|href)="vendor/([^"]+)"', html))
    assert vendored, "index.html loads nothing from vendor/"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    rule = makefile[makefile.index("$(VENDOR)/uPlot.iife.min.js:"):].split("\n\n", 1)[0]
    missing = sorted(name for name in vendored | {"LICENSE"} if name not in rule)
    assert not missing, f"the Makefile's vendor target does not copy {missing}"
