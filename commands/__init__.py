"""Command groups of cli.py that live apart from it (cli.py registers them)."""
