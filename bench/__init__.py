"""Reproducible benchmarks of Opus; see bench/README.md."""
