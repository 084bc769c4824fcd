"""Personas: saved whole as JSON (new persona fields need no migration), found by id or name."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from contentforge.db.models import PersonaORM, utcnow
from contentforge.db.sessions import Store, insert_for
from contentforge.domain.models import Persona
from contentforge.errors import InvalidPersona


class PersonaRepository(Store):
    def upsert_persona(self, persona: Persona) -> None:
        """Insert the persona, or replace the stored one with the same id."""
        now = utcnow()
        values = {
            "id": persona.id,
            "name": persona.name,
            "niche": persona.niche,
            "data": persona.model_dump(mode="json"),
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._db.write() as session:
                stmt = insert_for(session, PersonaORM).values(**values)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={
                        "name": persona.name,
                        "niche": persona.niche,
                        "data": values["data"],
                        "updated_at": now,
                    },
                )
                session.execute(stmt)
        except IntegrityError as exc:
            raise InvalidPersona(
                f"persona name {persona.name!r} is already used by another persona; rename one of them"
            ) from exc

    def get_persona(self, id_or_name: str) -> Persona | None:
        """The persona with this id, else this name (exact, then case-insensitive if unambiguous)."""
        with self._db.read() as session:
            row = session.get(PersonaORM, id_or_name)
            if row is None:
                row = session.scalars(select(PersonaORM).where(PersonaORM.name == id_or_name)).first()
            if row is None:
                matches = session.scalars(
                    select(PersonaORM).where(func.lower(PersonaORM.name) == id_or_name.lower()).limit(2)
                ).all()
                row = matches[0] if len(matches) == 1 else None
            return None if row is None else to_persona(row)

    def list_personas(self) -> list[Persona]:
        with self._db.read() as session:
            return [to_persona(row) for row in session.scalars(select(PersonaORM).order_by(PersonaORM.name))]


def to_persona(row: PersonaORM) -> Persona:
    try:
        return Persona.model_validate(row.data)
    except ValidationError as exc:
        raise InvalidPersona(f"stored persona {row.id!r} no longer validates: {exc}") from exc
