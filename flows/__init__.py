"""Prefect flows: one per file, each runnable with ``python flows/<name>.py``."""
