"""Test support that honours the ports: in-memory fakes, a double of the Service Bus SDK, an Azurite runner.

The fakes are held to the real adapters by the contract suites in `tests/contracts`, so a test that passes
against a fake says something about the pipeline on PostgreSQL and on Azure.
"""
