"""The row retry policy: transient store errors are tried again, every other error is final at once."""

from __future__ import annotations

import asyncio

import pytest

from packager.errors import AccessDenied, ObjectNotFound, TransientStoreError
from packager.retry import with_retries


def _flaky(failures: list[Exception], result: str = "ok"):
    calls = []

    async def work() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    return work, calls


def test_transient_errors_are_retried_and_counted():
    work, calls = _flaky([TransientStoreError("reset"), TransientStoreError("503")])
    assert asyncio.run(with_retries(work, max_wait=0.01)) == ("ok", 2)
    assert len(calls) == 3


@pytest.mark.parametrize("error", [ObjectNotFound("gone"), AccessDenied("no"), ValueError("bug")])
def test_other_errors_are_final_at_once(error):
    work, calls = _flaky([error])
    with pytest.raises(type(error)) as raised:
        asyncio.run(with_retries(work, max_wait=0.01))
    assert len(calls) == 1 and raised.value.attempts_made == 1


def test_gives_up_after_the_attempts_and_says_how_many():
    work, calls = _flaky([TransientStoreError(f"t{i}") for i in range(5)])
    with pytest.raises(TransientStoreError, match="t2") as raised:
        asyncio.run(with_retries(work, attempts=3, max_wait=0.01))
    assert len(calls) == 3 and raised.value.attempts_made == 3
