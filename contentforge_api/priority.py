"""The ``priority`` a job-starting request may ask for, and who may ask for ``high``.

One place for every route that starts work (the content batch and one-piece routes, the strategy
chain), so the permission is checked the same way everywhere: ``high`` jumps the queue (the
``priority`` work queue, and the first free ``image-generation`` slot), which is worth money to
whoever asks, so it needs ``CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED``; ``normal`` and ``low`` run from
``default``. The check runs before anything else a route does, so a refused request starts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from contentforge_api.errors import ApiError
from contentforge_api.launcher import work_queue_for

if TYPE_CHECKING:  # the schemas import this module; the state module is not theirs to load
    from contentforge_api.state import ApiState

Priority = Literal["high", "normal", "low"]
PRIORITY_FIELD: Any = Field(
    "normal",
    description="high runs from the `priority` work queue (served first) and needs a token allowed to "
    "(CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED); normal and low from `default`.",
)
PRIORITY_REFUSED = "priority high without CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED"
"""How routes describe that 403 in their ``responses=``."""


def check_priority(state: ApiState, priority: str) -> str:
    """The work queue for ``priority``; 403 for ``high`` unless the settings allow it."""
    if priority == "high" and not state.settings.api_high_priority_allowed:
        raise ApiError(
            403,
            "priority high is not allowed for this token; set CONTENTFORGE_API_HIGH_PRIORITY_ALLOWED=true "
            "to let it jump the queue",
        )
    return work_queue_for(priority)
