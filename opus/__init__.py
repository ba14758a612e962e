"""Opus: a diamond-inventory pipeline."""
