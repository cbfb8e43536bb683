"""One retry policy for the rows of batch jobs: transient store errors get a few more attempts.

obstore retries single requests itself, but a connection dropped mid-stream, a WebDAV server closing a
keep-alive connection under load, or a 503 after the client's own retries surface as
:class:`~packager.errors.TransientStoreError`. Such a row is tried again with exponential backoff; any
other error (not found, access denied, bad href) is final at once. Lock, relocation and validation all
use this, so a flaky store is reported as flaky only when it stays flaky.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from packager.errors import StoreError

T = TypeVar("T")

DEFAULT_ATTEMPTS = 4
#: seconds before the first retry; each further retry waits twice as long
FIRST_WAIT = 0.25


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, StoreError) and exc.retryable


async def with_retries(work: Callable[[], Awaitable[T]], *, attempts: int = DEFAULT_ATTEMPTS,
                       max_wait: float = 10.0) -> tuple[T, int]:
    """``(await work(), retries used)``; the last error is raised when every attempt failed.

    The error raised carries ``attempts_made`` so callers can report how hard they tried.
    """
    # The first attempt runs bare: building a tenacity retrier costs more than a HEAD of a local file, and
    # almost every row succeeds at once. Only a transient failure pays for the retry machinery.
    try:
        return await work(), 0
    except BaseException as exc:
        if attempts <= 1 or not is_transient(exc):
            exc.attempts_made = 1  # type: ignore[attr-defined]
            raise
    retries = 1
    await asyncio.sleep(min(FIRST_WAIT, max_wait))
    try:  # waits continue the same series: FIRST_WAIT, 2 x FIRST_WAIT, 4 x ... up to max_wait
        async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts - 1), reraise=True,
                                           wait=wait_exponential(multiplier=2 * FIRST_WAIT, max=max_wait),
                                           retry=retry_if_exception(is_transient)):
            with attempt:
                retries = attempt.retry_state.attempt_number
                return await work(), retries
    except BaseException as exc:
        exc.attempts_made = retries + 1  # type: ignore[attr-defined]
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")
