"""Plan a month of topics for a persona and wait for a supervisor to approve them in the Prefect UI.

Topics are proposed (model via prompt ``topics.v1``, or offline rules from the niche catalog and
the brand's products, values and audience), checked by the quality gate (its verdict shown beside each
topic), saved with status ``proposed`` and shown as an artifact; the flow pauses with
``pause_flow_run(wait_for_input=TopicApproval)``. Approved topics get status ``approved``, the
rest ``rejected``. On timeout every topic is approved if CONTENTFORGE_APPROVE_ON_TIMEOUT is true,
otherwise they stay ``proposed``.

    python flows/plan_topics.py PERSONA 2026-07 [BRAND]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.input import RunInput
from pydantic import Field

from contentforge.domain.strategy import Topic
from flows.approval import gate_markdown, wait_for_decision
from tasks import resources
from tasks.run_hooks import note_step_end
from tasks.strategy import propose_topics, set_topic_status


class TopicApproval(RunInput):
    """Which proposed topics to approve (the others are rejected)."""

    approved: list[str] = Field(description="Ids of the topics to approve.")
    reviewer: str = Field(default="", description="Who decided.")


def topics_markdown(persona_id: str, month: str, topics: list[Topic]) -> str:
    lines = [
        f"# Topics for {persona_id}, {month}",
        "",
        "| id | title | pillar | angle | keywords | quality gate |",
        "|---|---|---|---|---|---|",
    ]
    for t in topics:
        gate = gate_markdown(t.source.get("quality_gate")).removeprefix("quality gate: ")
        lines.append(f"| `{t.id}` | {t.title} | {t.pillar} | {t.angle} | {', '.join(t.keywords)} | {gate} |")
    return "\n".join(lines)


@flow(name="plan-topics", on_cancellation=[note_step_end], on_crashed=[note_step_end])
def plan_topics(
    persona_id: str,
    month: str,
    brand: str | None = None,
    count: int = 4,
    seed: int = 0,
    timeout_s: int | None = None,
    poll_interval_s: int = 10,
) -> dict[str, Any]:
    """Propose ``count`` topics for ``persona_id`` in ``month`` (YYYY-MM) and apply the approval."""
    logger = get_run_logger()
    settings = resources.settings()
    topics = [Topic.model_validate(t) for t in propose_topics(persona_id, month, count, seed, brand)]
    ids = [t.id for t in topics]
    markdown = topics_markdown(persona_id, month, topics)
    create_markdown_artifact(markdown, key=f"topics-{persona_id[:30]}-{month}", description="Proposed topics")
    answer = wait_for_decision(
        TopicApproval.with_initial_data(description=markdown, approved=ids),
        key=f"topics-{persona_id}-{month}",
        timeout_s=timeout_s,
        poll_interval_s=poll_interval_s,
    )
    if answer is None:
        if settings.approve_on_timeout:
            set_topic_status(ids, "approved")
            logger.warning("no decision in time: all topics approved (CONTENTFORGE_APPROVE_ON_TIMEOUT)")
            return {"topics": ids, "approved": ids, "rejected": [], "timed_out": True, "errors": []}
        logger.warning("no decision in time: topics stay proposed")
        return {"topics": ids, "approved": [], "rejected": [], "timed_out": True, "errors": []}
    errors = [f"unknown topic id {i!r}" for i in answer.approved if i not in ids]
    approved = [i for i in ids if i in answer.approved]
    rejected = [i for i in ids if i not in approved]
    if approved:
        set_topic_status(approved, "approved")
    if rejected:
        set_topic_status(rejected, "rejected")
    logger.info("topics for %s %s: %d approved, %d rejected", persona_id, month, len(approved), len(rejected))
    return {"topics": ids, "approved": approved, "rejected": rejected, "timed_out": False, "errors": errors}


if __name__ == "__main__":
    print(plan_topics(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
