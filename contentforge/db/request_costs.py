"""Model calls paid for an API request (``/content/hooks`` and friends) in the cost ledger.

An API request has no batch and is no strategy step, so its charges carry ``step`` from
``API_REQUEST_STEPS`` (``api_hooks``) and the persona they were for. Each paid call is one entry
keyed ``api:<request id>:<call number>``: the request id is minted once per request, so recording a
call again (a retried write) adds nothing, while a second request that really calls the model again
is a second, real charge: the ledger lists money spent, and that call was paid twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from contentforge.db.costs import charge
from contentforge.db.models import API_REQUEST_STEPS, COST_KINDS, CostEntryORM
from contentforge.db.sessions import Store
from contentforge.errors import InvalidInput
from contentforge.redaction import redact


class RequestCostRepository(Store):
    def charge_request_call(
        self,
        step: str,
        *,
        charge_key: str,
        provider: str,
        amount_usd: float,
        kind: str = "text",
        persona_id: str | None = None,
        subject_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record one paid call of an API request once; False when ``charge_key`` was recorded already."""
        if step not in API_REQUEST_STEPS:
            raise InvalidInput(f"API request step must be one of {list(API_REQUEST_STEPS)}, not {step!r}")
        if kind not in COST_KINDS:
            raise InvalidInput(f"cost kind must be one of {list(COST_KINDS)}, not {kind!r}")
        with self._db.write() as session:
            return charge(
                session,
                charge_key,
                step=step,
                persona_id=persona_id,
                subject_id=subject_id,
                kind=kind,
                provider=provider,
                amount_usd=amount_usd,
                detail=None if detail is None else redact(dict(detail)),
            )

    def request_spend(self, step: str, *, persona_id: str | None = None) -> tuple[int, float]:
        """(entries, USD) charged to API requests of ``step``, optionally for one persona."""
        query = select(func.count(), func.coalesce(func.sum(CostEntryORM.amount_usd), 0.0)).where(
            CostEntryORM.step == step
        )
        if persona_id is not None:
            query = query.where(CostEntryORM.persona_id == persona_id)
        with self._db.read() as session:
            entries, usd = session.execute(query).one()
        return int(entries), float(usd)
