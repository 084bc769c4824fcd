"""ContentForge REST API and review gallery (FastAPI).

A thin HTTP layer over the ``contentforge`` library and the Prefect server: it validates requests
fully, then reads the database or starts deployments with ``run_deployment``; it never generates
images inside a request. ``create_app(settings)`` builds the app; ``contentforge api serve`` runs it.
"""

from contentforge_api.app import ApiConfigError, create_app

__all__ = ["ApiConfigError", "create_app"]
