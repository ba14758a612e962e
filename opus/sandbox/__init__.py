"""A local stand-in for the Nivoda GraphQL API, built from docs/nivoda-api.md alone.

It deliberately imports nothing else from `opus`, so it cannot share (and hide) the client's mistakes.
"""

from opus.sandbox.config import Behaviour, Latency, SandboxConfig
from opus.sandbox.inventory import HoldResult, Inventory
from opus.sandbox.runner import RunningSandbox, run_sandbox
from opus.sandbox.server import create_app, serve

__all__ = ["Behaviour", "HoldResult", "Inventory", "Latency", "RunningSandbox", "SandboxConfig", "create_app",
           "run_sandbox", "serve"]
