"""Strategy tasks: research a brand, propose personas, plan topics, write posts, derive social posts.

Each task is a thin wrapper around ``contentforge.research`` / ``contentforge.strategy``. Retries
(exponential backoff with jitter) happen only for errors a retry can fix: a page that timed out or
failed at the network/5xx level, or a text provider error marked retryable. Refusals (private
address, robots.txt, size limit) and bad input fail at once. Time limits sit on the calls
themselves (CONTENTFORGE_RESEARCH_TIMEOUT_S per page, CONTENTFORGE_TEXT_TIMEOUT_S per model call),
where they can interrupt the blocking I/O, rather than on these thread-run tasks. Model calls hold a
slot of the LLM global concurrency limit (``resources.run_llm``) unless only the offline engine runs,
and each paid call is written to the cost ledger at once, charged to the step and what it worked on
(``contentforge.strategy.costs``); the offline engine costs nothing and writes no entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from contentforge.config import Settings
from contentforge.domain.models import Persona, Platform, slugify
from contentforge.domain.strategy import (
    ApprovalStatus,
    BlogPost,
    BrandDNA,
    PersonaCandidate,
    SocialPost,
    Topic,
)
from contentforge.errors import InvalidInput, UnknownPersona
from contentforge.research.brand import gather_sources
from contentforge.research.errors import FetchFailed, FetchTimeout
from contentforge.research.fetch import FetchLimits, SafeFetcher
from contentforge.research.llm_extract import extract_dna
from contentforge.strategy.blog import blog_post_id, write_blog_post
from contentforge.strategy.costs import StrategyCharge, ledger_listener
from contentforge.strategy.personas import propose_personas
from contentforge.strategy.social import derive_social_posts
from contentforge.strategy.store import StrategyStore
from contentforge.strategy.topics import plan_topics
from contentforge.text.providers import build_text_provider
from contentforge.text.providers.chain import ProviderChain
from contentforge.text.providers.errors import ProviderError
from tasks import resources


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    error = state.data if isinstance(state.data, BaseException) else None
    if error is None:
        try:
            error = state.result(raise_on_failure=False)  # type: ignore[assignment]
        except Exception:
            return False
    if isinstance(error, FetchFailed):
        return "HTTP 4" not in str(error)
    if isinstance(error, ProviderError):
        return error.retryable
    return isinstance(error, FetchTimeout)


RETRY = {
    "retries": 2,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": _is_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


def settings() -> Settings:
    return resources.settings()


def text_chain(charge: StrategyCharge) -> ProviderChain:
    """The configured provider chain, every paid call of it charged to ``charge`` in the cost ledger.

    The offline engine answers from the request context and costs nothing.
    """
    return build_text_provider(settings(), on_call=ledger_listener(resources.repository(), charge))


def store() -> StrategyStore:
    return resources.services().strategy


def persona(persona_id: str) -> Persona:
    found = resources.repository().get_persona(persona_id)
    if found is None:
        raise UnknownPersona(
            f"no persona {persona_id!r}; create one with create-personas or `contentforge personas add`"
        )
    return found


@task(task_run_name="research-{name}", **RETRY)
def research_dna(name: str, urls: list[str], documents: list[str]) -> dict[str, Any]:
    """Fetch and read the brand's sources, extract its DNA; returns the DNA as JSON data."""
    config = settings()
    fetcher = SafeFetcher(FetchLimits.from_settings(config))
    sources = gather_sources(urls, [Path(d) for d in documents], fetcher, max_pages=config.research_max_pages)
    chain = text_chain(StrategyCharge("research_brand", brand_id=slugify(name)))  # the id save_dna gives it
    outcome = resources.run_llm(
        lambda: extract_dna(name, sources.pages, chain, website=urls[0] if urls else None)
    )
    dna = outcome.dna
    if sources.skipped:
        dna = dna.model_copy(
            update={"warnings": [*dna.warnings, *(f"skipped {u}: {r}" for u, r in sources.skipped)]}
        )
    return dna.model_dump(mode="json")


@task(cache_policy=NO_CACHE, persist_result=False)
def save_dna(name: str, dna: dict[str, Any], website: str | None) -> str:
    return store().save_brand(name, BrandDNA.model_validate(dna), website=website)


@task(task_run_name="propose-personas-{brand}", **RETRY)
def propose_persona_candidates(brand: str, count: int, seed: int) -> list[dict[str, Any]]:
    brand_id, _, dna = store().get_brand(brand)
    if dna is None:
        raise InvalidInput(f"brand {brand!r} has no DNA yet; run research-brand first")
    chain = text_chain(StrategyCharge("propose_personas", brand_id=brand_id))
    outcome = resources.run_llm(lambda: propose_personas(dna, chain, count=count, seed=seed))
    return [c.model_dump(mode="json") for c in outcome.candidates]


@task(cache_policy=NO_CACHE, persist_result=False)
def save_personas(brand_id: str | None, candidates: list[dict[str, Any]]) -> list[str]:
    repo = resources.repository()
    saved = []
    for data in candidates:
        candidate = PersonaCandidate.model_validate(data)
        repo.upsert_persona(candidate.to_persona())
        saved.append(candidate.id)
    if brand_id:
        store().link_personas(brand_id, saved)
    return saved


@task(task_run_name="plan-topics-{persona_id}-{month}", **RETRY)
def propose_topics(
    persona_id: str, month: str, count: int, seed: int, brand: str | None
) -> list[dict[str, Any]]:
    who = persona(persona_id)
    db = store()
    dna, brand_id = None, None
    if brand:
        brand_id, _, dna = db.get_brand(brand)
    chain = text_chain(StrategyCharge("plan_topics", brand_id, persona_id=who.id, subject_id=month))
    outcome = resources.run_llm(
        lambda: plan_topics(who, month, chain, dna=dna, brand_id=brand_id, count=count, seed=seed)
    )
    db.save_topics(outcome.topics)
    return [t.model_dump(mode="json") for t in outcome.topics]


@task(cache_policy=NO_CACHE, persist_result=False)
def set_topic_status(topic_ids: list[str], status: str) -> int:
    return store().set_topic_status(topic_ids, ApprovalStatus(status))


@task(task_run_name="write-post-{topic_id}", **RETRY)
def write_post_draft(topic_id: str, target_pages: int, seed: int) -> dict[str, Any]:
    db = store()
    topic: Topic = db.get_topic(topic_id)
    if topic.status is not ApprovalStatus.approved:
        raise InvalidInput(f"topic {topic_id} is {topic.status.value}; approve it first (plan-topics)")
    dna = db.get_brand(topic.brand_id)[2] if topic.brand_id else None
    who = persona(topic.persona_id)
    charge = StrategyCharge("write_blog_post", topic.brand_id, who.id, subject_id=blog_post_id(topic.id))
    chain = text_chain(charge)
    outcome = resources.run_llm(
        lambda: write_blog_post(topic, who, chain, dna=dna, target_pages=target_pages, seed=seed)
    )
    db.save_blog_post(outcome.post)
    return outcome.post.model_dump(mode="json")


@task(cache_policy=NO_CACHE, persist_result=False)
def set_post_status(post_id: str, status: str, reviewer: str | None, markdown: str | None) -> None:
    store().set_blog_status(post_id, ApprovalStatus(status), reviewer=reviewer, markdown=markdown)


@task(task_run_name="social-posts-{post_id}", **RETRY)
def derive_posts(post_id: str, platforms: list[str], require_approved: bool = True) -> list[dict[str, Any]]:
    db = store()
    post: BlogPost = db.get_blog_post(post_id)
    if require_approved and post.status is not ApprovalStatus.approved:
        raise InvalidInput(f"blog post {post_id} is {post.status.value}; approve it first (write-blog-post)")
    who = persona(post.persona_id)
    wanted: list[Platform | str] = list(platforms) or list(who.platforms)
    topic = db.get_topic(post.topic_id)
    chain = text_chain(StrategyCharge("derive_social_posts", topic.brand_id, who.id, subject_id=post.id))
    outcome = resources.run_llm(lambda: derive_social_posts(post, who, wanted, chain, topic=topic))
    posts: list[SocialPost] = outcome.posts
    db.save_social_posts(posts)
    return [p.model_dump(mode="json") for p in posts]
