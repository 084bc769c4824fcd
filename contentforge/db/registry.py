"""The model registry's repository: installed models and LoRAs, their use, and feedback scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from contentforge.db.models import utcnow
from contentforge.db.models_registry import InstalledModelORM, ModelFeedbackORM
from contentforge.db.sessions import Store, insert_for
from contentforge.errors import InvalidInput


@dataclass(frozen=True)
class InstalledModel:
    name: str
    kind: str
    source: str
    source_ref: str
    path: str
    family: str
    family_reason: str
    sha256: str
    size_bytes: int
    trigger_words: tuple[str, ...] = ()
    recommended_weight: float | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    licence: str = ""
    rating: float | None = None
    downloads: int = 0
    installed_at: datetime = field(default_factory=utcnow)
    last_used_at: datetime | None = None

    def line(self) -> str:
        size = f"{self.size_bytes / 2**20:.1f} MB"
        used = self.last_used_at.strftime("%Y-%m-%d") if self.last_used_at else "never"
        return (
            f"{self.name}  {self.kind}  {self.family}  {size}  {self.source}:{self.source_ref}  used {used}"
        )


@dataclass(frozen=True)
class FeedbackScore:
    """Review outcomes and ratings of one LoRA or parameter value."""

    approvals: int = 0
    rejections: int = 0
    rating_total: float = 0.0
    rating_count: int = 0

    @property
    def trials(self) -> int:
        return self.approvals + self.rejections + self.rating_count

    def value(self) -> float:
        """A smoothed 0-1 score: approvals and ratings (1-5 mapped to 0-1) with a neutral prior of 0.5.

        Two pseudo-observations at 0.5 keep one early rejection from burying a LoRA for good.
        """
        good = self.approvals + sum_ratings(self.rating_total, self.rating_count)
        total = self.approvals + self.rejections + self.rating_count
        return (good + 1.0) / (total + 2.0)


def sum_ratings(total: float, count: int) -> float:
    """Ratings 1-5 as 0-1 successes summed: (rating - 1) / 4 each."""
    return (total - count) / 4.0


def _model(row: InstalledModelORM) -> InstalledModel:
    return InstalledModel(
        name=row.name,
        kind=row.kind,
        source=row.source,
        source_ref=row.source_ref,
        path=row.path,
        family=row.family,
        family_reason=row.family_reason,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        trigger_words=tuple(row.trigger_words or ()),
        recommended_weight=row.recommended_weight,
        tags=tuple(row.tags or ()),
        description=row.description,
        licence=row.licence,
        rating=row.rating,
        downloads=row.downloads,
        installed_at=row.installed_at,
        last_used_at=row.last_used_at,
    )


class ModelRegistry(Store):
    def add(self, model: InstalledModel, *, replace: bool = False) -> None:
        """Record a verified install; a taken name is refused unless ``replace``."""
        with self._db.write() as session:
            existing = session.get(InstalledModelORM, model.name)
            if existing is not None:
                if not replace:
                    raise InvalidInput(
                        f"a model named {model.name!r} is installed already; "
                        "remove it first or pick another --name"
                    )
                session.delete(existing)
                session.flush()
            session.add(
                InstalledModelORM(
                    name=model.name,
                    kind=model.kind,
                    source=model.source,
                    source_ref=model.source_ref,
                    path=model.path,
                    family=model.family,
                    family_reason=model.family_reason,
                    sha256=model.sha256,
                    size_bytes=model.size_bytes,
                    trigger_words=list(model.trigger_words),
                    recommended_weight=model.recommended_weight,
                    tags=list(model.tags),
                    description=model.description,
                    licence=model.licence,
                    rating=model.rating,
                    downloads=model.downloads,
                    installed_at=model.installed_at,
                    last_used_at=model.last_used_at,
                )
            )

    def get(self, name: str) -> InstalledModel | None:
        with self._db.read() as session:
            row = session.get(InstalledModelORM, name)
            return None if row is None else _model(row)

    def list_models(self, *, kind: str | None = None, family: str | None = None) -> list[InstalledModel]:
        query = select(InstalledModelORM).order_by(InstalledModelORM.name)
        if kind is not None:
            query = query.where(InstalledModelORM.kind == kind)
        if family is not None:
            query = query.where(InstalledModelORM.family == family)
        with self._db.read() as session:
            return [_model(row) for row in session.scalars(query)]

    def remove(self, name: str) -> InstalledModel:
        with self._db.write() as session:
            row = session.get(InstalledModelORM, name)
            if row is None:
                raise InvalidInput(f"no installed model named {name!r} (see: contentforge models list)")
            model = _model(row)
            session.delete(row)
            return model

    def touch(self, names: list[str], when: datetime | None = None) -> None:
        """Mark models as used now (pruning removes the least recently used first)."""
        if not names:
            return
        with self._db.write() as session:
            for row in session.scalars(select(InstalledModelORM).where(InstalledModelORM.name.in_(names))):
                row.last_used_at = when or utcnow()

    # -- feedback ----------------------------------------------------------------------------------

    def record_feedback(
        self, subject: str, key: str, *, approved: bool | None = None, rating: int | None = None
    ) -> None:
        """Add one review outcome and/or one 1-5 rating to ``subject``'s ``key`` (``lora``/``param``)."""
        if rating is not None and not 1 <= rating <= 5:
            raise InvalidInput(f"rating {rating}: use 1 to 5")
        with self._db.write() as session:
            stmt = insert_for(session, ModelFeedbackORM).values(
                subject=subject,
                key=key,
                approvals=0,
                rejections=0,
                rating_total=0.0,
                rating_count=0,
                updated_at=utcnow(),
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["subject", "key"]))
            row = session.scalars(
                select(ModelFeedbackORM)
                .where(ModelFeedbackORM.subject == subject, ModelFeedbackORM.key == key)
                .with_for_update()
            ).one()
            if approved is True:
                row.approvals += 1
            elif approved is False:
                row.rejections += 1
            if rating is not None:
                row.rating_total += rating
                row.rating_count += 1

    def feedback(self, subject: str) -> dict[str, FeedbackScore]:
        with self._db.read() as session:
            rows = session.scalars(select(ModelFeedbackORM).where(ModelFeedbackORM.subject == subject))
            return {
                row.key: FeedbackScore(row.approvals, row.rejections, row.rating_total, row.rating_count)
                for row in rows
            }


def prune_plan(models: list[InstalledModel], budget_bytes: int, keep: set[str]) -> list[InstalledModel]:
    """Models to remove so the rest fit ``budget_bytes``: least recently used first, never one in ``keep``.

    Never used counts as oldest (by install time). If the protected models alone exceed the budget,
    everything else goes and the plan says no more.
    """
    total = sum(m.size_bytes for m in models)
    candidates = sorted(
        (m for m in models if m.name not in keep),
        key=lambda m: (m.last_used_at or m.installed_at, m.installed_at, m.name),
    )
    plan: list[InstalledModel] = []
    for model in candidates:
        if total <= budget_bytes:
            break
        plan.append(model)
        total -= model.size_bytes
    return plan
