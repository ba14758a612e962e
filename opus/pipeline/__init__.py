"""The use cases of a run. They reach the outside only through `opus.ports` and the database."""
