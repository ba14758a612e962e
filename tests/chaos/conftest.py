"""The API under hostile and careless clients: the REST API fixtures of tests/integration, reused as they are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(INTEGRATION))  # for `from api_conftest import ...` in these tests
sys.path.insert(0, str(E2E))  # for `from processes import ...`: the helpers that start `opus` processes

_spec = importlib.util.spec_from_file_location("api_fixtures", INTEGRATION / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

# Fixtures are found by name in a conftest's namespace.
settings = _fixtures.settings
make_client = _fixtures.make_client
client = _fixtures.client
keys = _fixtures.keys
auth = _fixtures.auth
sandbox = _fixtures.sandbox
nivoda = _fixtures.nivoda
