"""The tenacity wait strategies shared by the text providers and the Replicate backend."""

from __future__ import annotations

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

from contentforge.retry_after import wait_exponential_equal_jitter, wait_retry_after


class Limited(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def waits_for(answers: list[float | None], wait: object) -> list[float]:
    """The sleeps tenacity takes while ``answers`` (each a Retry-After or None) fail in turn."""
    slept: list[float] = []
    queue = list(answers)

    def call() -> str:
        if queue:
            raise Limited(queue.pop(0))
        return "ok"

    retrying = Retrying(
        retry=retry_if_exception_type(Limited),
        wait=wait,  # type: ignore[arg-type]
        stop=stop_after_attempt(len(answers) + 1),
        sleep=slept.append,
        reraise=True,
    )
    assert retrying(call) == "ok"
    return slept


def retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, Limited) else None


def test_the_servers_wait_wins_else_the_fallback() -> None:
    assert waits_for([7.0, None, 0.0, -3.0], wait_retry_after(retry_after, wait_fixed(0.25))) == [
        7.0,
        0.25,
        0.0,
        0.0,  # a negative hint (a date in the past) is "now"
    ]


def test_jitter_and_cap_apply_to_the_servers_wait() -> None:
    slept = waits_for([7.0] * 20, wait_retry_after(retry_after, wait_fixed(0), jitter_s=0.5))
    assert all(7.0 <= s <= 7.5 for s in slept) and len(set(slept)) > 1
    assert waits_for([3600.0], wait_retry_after(retry_after, wait_fixed(0), cap_s=60.0)) == [60.0]


@pytest.mark.parametrize("initial", [0.5, 1.0])
def test_equal_jitter_backoff_doubles_within_half_to_full_step(initial: float) -> None:
    slept = waits_for([None] * 8, wait_exponential_equal_jitter(initial, max_s=30.0))
    for attempt, sleep in enumerate(slept, start=1):
        step = min(30.0, initial * 2 ** (attempt - 1))
        assert step / 2 <= sleep <= step, (attempt, sleep)
