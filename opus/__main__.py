"""`python -m opus` is the `opus` command."""

from opus.cli import run_cli

run_cli()
