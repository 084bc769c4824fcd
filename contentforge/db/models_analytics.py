"""ORM tables for analytics: metric snapshots, account series, learned weights (issue 15)."""

from __future__ import annotations
