"""Inventory feeds: clients of the marketplaces Opus ingests, each implementing `opus.ports.Feed`."""

from opus.feeds.nivoda import NivodaClient

__all__ = ["NivodaClient"]
