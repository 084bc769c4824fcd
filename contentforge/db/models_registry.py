"""ORM tables for the model registry (issue 16)."""

from __future__ import annotations
