"""ContentForge: social-media content batches for brands and AI personas.

This package is the plain library: domain models, providers behind small protocols, the database
and configuration. It never imports Prefect; orchestration lives in the top-level `tasks/` and
`flows/` packages.
"""

__version__ = "0.1.0"
