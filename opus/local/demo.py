"""`make demo`: the sandbox, a full run, then the API, on one machine with nothing configured.

Starts the Nivoda sandbox as a child process, uses DATABASE_URL if set (else the embedded PostgreSQL), runs a
full pipeline run against the sandbox, prints its summary, creates an admin key and serves the API and the
dashboard until interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from opus.api.keys import create_key
from opus.config import load_settings
from opus.domain.models import RunType
from opus.feeds.catalog import enabled_feeds
from opus.local.progress import progress_reporter
from opus.local.run_once import run_feeds
from opus.local.runtime import LocalRuntime
from opus.local.serve import DASHBOARD_DIR, serve

API_PORT = int(os.environ.get("DEMO_API_PORT", "8000"))
SANDBOX_PORT = int(os.environ.get("DEMO_SANDBOX_PORT", "4000"))
SANDBOX_DIAMONDS = int(os.environ.get("DEMO_DIAMONDS", "20000"))
ENDPOINT = f"http://127.0.0.1:{SANDBOX_PORT}/api/diamonds"
FEEDS_FILE = Path(__file__).resolve().parents[2] / "config" / "feeds.toml"
AUTH_QUERY = (
    'query { authenticate { username_and_password(username: "sandbox", password: "sandbox") { token } } }'
)


def wait_for_sandbox(proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited with status {proc.returncode}; is port {SANDBOX_PORT} free?")
        try:
            if httpx.post(ENDPOINT, json={"query": AUTH_QUERY}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the sandbox did not answer at {ENDPOINT} within {timeout_s:.0f} s")


def ready_banner(url: str, key: str) -> str:
    dashboard = [f"  dashboard:  {url}/dashboard"] if DASHBOARD_DIR.is_dir() else []
    return "\n".join([
        "",
        f"Opus is serving {url}",
        f"  API docs:   {url}/api/v2/docs",
        *dashboard,
        f"  admin key:  {key}",
        f"  try:        curl -H 'X-API-Key: {key}' '{url}/api/v2/diamonds?shapes=ROUND&limit=10'",
        "Ctrl-C stops it.",
    ])


def main() -> int:
    # The sandbox's published demo credentials, whatever the environment says about the real feed.
    # The feeds the production system runs (natural and lab-grown), each with its own run, side by side.
    settings = load_settings(nivoda_endpoint=ENDPOINT, nivoda_username="sandbox", nivoda_password="sandbox",  # noqa: S106
                             feeds_file=FEEDS_FILE)
    print(f"starting the Nivoda sandbox with {SANDBOX_DIAMONDS} diamonds at {ENDPOINT}", flush=True)
    sandbox = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "opus", "sandbox", "--port", str(SANDBOX_PORT),
         "--diamonds", str(SANDBOX_DIAMONDS), "--seed", "7"],
    )
    try:
        wait_for_sandbox(sandbox)
        where = "DATABASE_URL" if settings.configured_database_url else f"embedded PostgreSQL in {settings.state_dir}"
        print(f"database: {where}", flush=True)
        with LocalRuntime(settings) as runtime:
            with progress_reporter() as report:
                results = run_feeds(runtime, RunType.FULL, enabled_feeds(settings.feeds),
                                    workers=settings.worker_concurrency, on_progress=report)
            for result in results:
                print(json.dumps(result, indent=2), flush=True)
            if any(result["status"] != "completed" for result in results):
                return 1
            key = create_key(runtime.db, "demo", "admin")
            serve(settings, host="127.0.0.1", port=API_PORT, runtime=runtime,
                  on_ready=lambda url: print(ready_banner(url, key), flush=True))
        return 0
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
