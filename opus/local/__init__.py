"""The single-machine runtime: embedded PostgreSQL, worker threads, the in-process schedule."""
