"""Database access for brands' DNA, topics, blog posts and social posts (tables of migration 0003).

Personas themselves are saved with ``Repository.upsert_persona``; this module only links them to
their brand. Every write is idempotent: saving the same topic, post or platform caption again
replaces it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select, update
from sqlalchemy.orm import Session

from contentforge.db.models import BlogPostORM, BrandORM, PersonaORM, SocialPostORM, TopicORM, utcnow
from contentforge.db.sessions import RecordNotFound, SessionPolicy
from contentforge.domain.models import Platform, slugify
from contentforge.domain.strategy import ApprovalStatus, BlogPost, BrandDNA, SocialPost, Topic
from contentforge.errors import InvalidInput


class StrategyStore:
    """Brands, topics, blog and social posts, in the repository's short transactions (``db.sessions``)."""

    def __init__(self, engine: Engine | SessionPolicy) -> None:
        self._db = SessionPolicy.of(engine)

    def _session(self) -> AbstractContextManager[Session]:
        return self._db.write()

    # brands
    def save_brand(self, name: str, dna: BrandDNA, website: str | None = None) -> str:
        """Create or update the brand called ``name`` (id = slug of the name) with its DNA."""
        brand_id = slugify(name)
        with self._session() as s:
            row = s.get(BrandORM, brand_id)
            data = dna.model_dump(mode="json")
            if row is None:
                s.add(BrandORM(id=brand_id, name=name, website=website, dna=data))
            else:
                row.name, row.dna = name, data
                row.website = website or row.website
        return brand_id

    def get_brand(self, id_or_name: str) -> tuple[str, str, BrandDNA | None]:
        """``(id, name, dna)``; ``RecordNotFound`` when no brand has this id or (case-insensitive) name."""
        with self._db.read() as s:
            row = s.get(BrandORM, id_or_name) or s.get(BrandORM, slugify(id_or_name))
            if row is None:
                row = s.scalars(
                    select(BrandORM).where(func.lower(BrandORM.name) == id_or_name.lower())
                ).first()
            if row is None:
                raise RecordNotFound(
                    f"no brand {id_or_name!r}; research it first (contentforge brand research)"
                )
            return row.id, row.name, BrandDNA.model_validate(row.dna) if row.dna else None

    def link_personas(self, brand_id: str, persona_ids: list[str]) -> None:
        with self._session() as s:
            s.execute(update(PersonaORM).where(PersonaORM.id.in_(persona_ids)).values(brand_id=brand_id))

    def personas_of(self, brand_id: str) -> list[str]:
        with self._db.read() as s:
            return list(
                s.scalars(
                    select(PersonaORM.id).where(PersonaORM.brand_id == brand_id).order_by(PersonaORM.id)
                )
            )

    # topics
    def save_topics(self, topics: list[Topic]) -> None:
        now = utcnow()
        with self._session() as s:
            for position, topic in enumerate(topics):
                row = s.get(TopicORM, topic.id)
                values: dict[str, Any] = {
                    "persona_id": topic.persona_id,
                    "brand_id": topic.brand_id,
                    "month": topic.month,
                    "title": topic.title,
                    "status": topic.status.value,
                    "data": topic.model_dump(mode="json"),
                    "updated_at": now,
                }
                if row is None:
                    # created_at keeps the proposed order (the listing sorts by it)
                    s.add(TopicORM(id=topic.id, created_at=now + timedelta(microseconds=position), **values))
                else:
                    for key, value in values.items():
                        setattr(row, key, value)

    def topics(
        self, *, persona_id: str | None = None, month: str | None = None, status: str | None = None
    ) -> list[Topic]:
        query = select(TopicORM).order_by(TopicORM.month, TopicORM.created_at, TopicORM.id)
        if persona_id:
            query = query.where(TopicORM.persona_id == persona_id)
        if month:
            query = query.where(TopicORM.month == month)
        if status:
            query = query.where(TopicORM.status == status)
        with self._db.read() as s:
            return [self._topic(row) for row in s.scalars(query)]

    @staticmethod
    def _topic(row: TopicORM) -> Topic:
        return Topic.model_validate({**row.data, "status": row.status, "title": row.title})

    def get_topic(self, topic_id: str) -> Topic:
        with self._db.read() as s:
            row = s.get(TopicORM, topic_id)
            if row is None:
                raise RecordNotFound(f"no topic {topic_id!r}")
            return self._topic(row)

    def set_topic_status(self, topic_ids: list[str], status: ApprovalStatus) -> int:
        with self._session() as s:
            result = s.execute(
                update(TopicORM)
                .where(TopicORM.id.in_(topic_ids))
                .values(status=status.value, updated_at=utcnow())
            )
            return cast(CursorResult[Any], result).rowcount or 0  # an UPDATE's result is a cursor result

    # blog posts
    def save_blog_post(self, post: BlogPost) -> None:
        now = utcnow()
        with self._session() as s:
            if s.get(TopicORM, post.topic_id) is None:
                raise RecordNotFound(f"no topic {post.topic_id!r} for post {post.id}")
            row = s.get(BlogPostORM, post.id)
            values: dict[str, Any] = {
                "topic_id": post.topic_id,
                "persona_id": post.persona_id,
                "title": post.title,
                "markdown": post.markdown,
                "word_count": post.word_count,
                "status": post.status.value,
                "source": post.source,
                "updated_at": now,
            }
            if row is None:
                s.add(BlogPostORM(id=post.id, created_at=now, **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)

    def get_blog_post(self, post_id: str) -> BlogPost:
        with self._db.read() as s:
            row = s.get(BlogPostORM, post_id)
            if row is None:
                raise RecordNotFound(f"no blog post {post_id!r}")
            return BlogPost(
                id=row.id,
                topic_id=row.topic_id,
                persona_id=row.persona_id,
                title=row.title,
                markdown=row.markdown,
                status=ApprovalStatus(row.status),
                source=row.source,
            )

    def set_blog_status(self, post_id: str, status: ApprovalStatus, *, reviewer: str | None = None,
                        markdown: str | None = None) -> None:  # fmt: skip
        values: dict[str, Any] = {"status": status.value, "reviewer": reviewer, "updated_at": utcnow()}
        if markdown is not None:
            from contentforge.domain.strategy import count_words

            values |= {"markdown": markdown, "word_count": count_words(markdown)}
        with self._session() as s:
            result = s.execute(update(BlogPostORM).where(BlogPostORM.id == post_id).values(**values))
            if not cast(CursorResult[Any], result).rowcount:  # an UPDATE's result is a cursor result
                raise RecordNotFound(f"no blog post {post_id!r}")

    # social posts
    def save_social_posts(self, posts: list[SocialPost]) -> None:
        if not posts:
            return
        if len({p.blog_post_id for p in posts}) != 1:
            raise InvalidInput("social posts are saved per blog post")
        with self._session() as s:
            platforms = [p.platform.value for p in posts]
            s.execute(
                delete(SocialPostORM).where(
                    SocialPostORM.blog_post_id == posts[0].blog_post_id, SocialPostORM.platform.in_(platforms)
                )
            )
            for post in posts:
                s.add(
                    SocialPostORM(
                        blog_post_id=post.blog_post_id,
                        persona_id=post.persona_id,
                        platform=post.platform.value,
                        text=post.text,
                        hashtags=post.hashtags,
                        source=post.source,
                    )
                )

    def social_posts(self, blog_post_id: str) -> list[SocialPost]:
        with self._db.read() as s:
            rows = s.scalars(
                select(SocialPostORM)
                .where(SocialPostORM.blog_post_id == blog_post_id)
                .order_by(SocialPostORM.platform)
            )
            return [
                SocialPost(
                    platform=Platform(r.platform),
                    text=r.text,
                    hashtags=r.hashtags,
                    blog_post_id=r.blog_post_id,
                    persona_id=r.persona_id,
                    source=r.source,
                )
                for r in rows
            ]
