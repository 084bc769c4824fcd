"""Thin Prefect tasks around library calls: retries, caching, concurrency and timeouts live here."""
