"""Thin Prefect tasks around library calls: retries, caching, concurrency and timeouts live here."""

from tasks import prefect_services  # noqa: F401  (a lock per Prefect service class: a deadlock fix)
