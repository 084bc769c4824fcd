"""The ``contentforge`` command line: the orchestration-side entry point (it may import Prefect)."""
