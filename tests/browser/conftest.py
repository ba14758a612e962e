"""Fixtures of the browser tests; they live in browser_stack.py beside the helpers they share."""

from browser_stack import browser, browser_database, console, page, playwright_driver, stack

__all__ = ["browser", "browser_database", "console", "page", "playwright_driver", "stack"]
