"""ORM tables for persona conversations (issue 17)."""

from __future__ import annotations
