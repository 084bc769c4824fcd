"""Every job's flow reacts to Cancelled and Crashed (issue 14, item 2): the hooks are wired and say why.

The batch flows give back their lease, slots and queued generations (``tests/test_jobs_cancel.py``
runs that on a real worker); ``publish-due`` leaves its claims to expire (``tests/test_publish_cancel.py``);
the strategy, scheduling and review flows hold nothing, so their hook logs what the run leaves
(``STEP_LEFTOVERS``) on the run's log, which the Prefect UI shows with the Cancelled or Crashed state.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelling, Crashed

from tasks import run_hooks

STEP_FLOWS = {
    "flows.research_brand": "research_brand",
    "flows.create_personas": "create_personas",
    "flows.plan_topics": "plan_topics",
    "flows.write_blog_post": "write_blog_post",
    "flows.derive_social_posts": "derive_social_posts",
    "flows.schedule_batch": "schedule_batch",
    "flows.review_pieces": "review_pieces",
}


def _flow(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "name"), sorted(STEP_FLOWS.items()))
def test_each_step_flow_reports_what_a_cancelled_or_crashed_run_leaves(
    module: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = _flow(module, name)
    assert run_hooks.note_step_end in flow.on_cancellation_hooks
    assert run_hooks.note_step_end in flow.on_crashed_hooks
    assert flow.name in run_hooks.STEP_LEFTOVERS, "each flow says what it leaves, not a generic line"

    said: list[str] = []

    class Logger:
        def warning(self, message: str, *args: object) -> None:
            said.append(message % args)

    monkeypatch.setattr(run_hooks, "flow_run_logger", lambda *_: Logger())
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="a-run")
    run_hooks.note_step_end(flow, run, Cancelling())
    run_hooks.note_step_end(flow, run, Crashed())
    leftover = run_hooks.STEP_LEFTOVERS[flow.name]
    assert said == [f"Cancelling: {leftover}", f"Crashed: {leftover}"]


def test_the_batch_and_publish_flows_keep_their_own_hooks() -> None:
    batch = _flow("flows.produce_content_batch", "produce_content_batch")
    publish = _flow("flows.publish_due", "publish_due")
    assert batch.on_cancellation_hooks == [run_hooks.mark_batch_cancelled]
    assert batch.on_crashed_hooks == [run_hooks.mark_batch_crashed]
    assert publish.on_cancellation_hooks == publish.on_crashed_hooks == [run_hooks.note_publish_end]
