"""Waiting for a reviewer's decision in the Prefect UI, shared by the strategy flows' approval steps."""

from __future__ import annotations

from typing import Any, TypeVar

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from tasks import resources


def gate_markdown(gate: dict[str, Any] | None) -> str:
    """The quality gate's verdict on a text (``source["quality_gate"]``): one line for a form."""
    if not gate:
        return "quality gate: not run"
    if gate.get("passed"):
        return f"quality gate: passed ({gate.get('status')})"
    issues = "; ".join(f"{i['rule']}: {i['detail']}" for i in gate.get("issues", []))
    return f"**quality gate: {gate.get('status')}** ({issues})"


FormT = TypeVar("FormT", bound=RunInput)


def wait_for_decision(
    form: type[FormT], *, key: str, timeout_s: int | None, poll_interval_s: int
) -> FormT | None:
    """Pause this flow run until a reviewer submits ``form`` in the UI; None when nobody decides in time.

    ``timeout_s`` None means ``CONTENTFORGE_APPROVAL_TIMEOUT_S``. What a timeout means (a default
    selection, approval by configuration, or things staying proposed) is each flow's own decision.
    """
    try:
        return pause_flow_run(
            wait_for_input=form,
            timeout=resources.settings().approval_timeout_s if timeout_s is None else timeout_s,
            poll_interval=poll_interval_s,
            key=key,
        )
    except FlowPauseTimeout:
        return None
