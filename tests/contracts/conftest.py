"""Fixtures of the contract suites: every implementation of a port, behind one small harness each.

The suites state what the pipeline relies on of each port and run it against every implementation, so that
the in-memory fakes the pipeline's tests use cannot drift from the adapters that run in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opus.testing.azurite import running_azurite_blob

AZURITE_BLOB = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A connection string for `devstoreaccount1` on an Azurite started for this session."""
    with running_azurite_blob(AZURITE_BLOB, tmp_path_factory.mktemp("azurite")) as connection:
        yield connection
