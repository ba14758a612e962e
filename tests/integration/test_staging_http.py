"""Against a sandbox that rejects what Nivoda's staging rejects: with NIVODA_STAGING the client pages and gets
stones; without it the page fails at once, with an error naming the field."""

from __future__ import annotations

import pytest

from opus.config import load_settings
from opus.domain.models import FeedQuery
from opus.errors import FeedPermanentError
from opus.feeds import NivodaClient
from opus.sandbox.config import Behaviour, SandboxConfig
from opus.sandbox.runner import run_sandbox


def test_the_staging_switch_decides_whether_staging_accepts_the_page() -> None:
    with run_sandbox(diamonds=30, seed=5, config=SandboxConfig(behaviour=Behaviour(staging=True))) as sb:
        base = {"nivoda_endpoint": sb.endpoint, "nivoda_username": sb.username, "nivoda_password": sb.password}
        with NivodaClient.from_settings(load_settings(**base, nivoda_staging=True)) as staging:
            items = staging.page(FeedQuery(), 0, 50)
            assert len(items) == 30
            assert "clarity" not in items[0]["diamond"]["certificate"]
            assert staging.get(items[0]["diamond"]["id"]) is not None
        with NivodaClient.from_settings(load_settings(**base)) as production, \
                pytest.raises(FeedPermanentError, match=r"clarity|floInt|floCol|labgrown_type"):
            production.page(FeedQuery(), 0, 50)
