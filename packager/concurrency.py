"""Bounded, order-preserving concurrency for batch jobs over many rows.

Rows stream in, results stream out in input order, and at most ``in_flight`` rows are being worked on
or waiting to be written, so memory stays flat however long the lock is.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def ordered_map(inputs: Iterable[T], work: Callable[[T], Awaitable[R]], *, in_flight: int) -> AsyncIterator[R]:
    """Yield ``await work(x)`` for each input, in input order, with at most ``in_flight`` pending.

    ``work`` should turn its own errors into results: an exception here stops the whole map.
    """
    if in_flight < 1:
        raise ValueError("in_flight must be at least 1")
    pending: deque[asyncio.Task[R]] = deque()
    source = iter(inputs)
    try:
        for item in source:
            pending.append(asyncio.ensure_future(work(item)))
            if len(pending) >= in_flight:
                break
        while pending:
            result = await pending.popleft()
            following = next(source, _END)
            if following is not _END:
                pending.append(asyncio.ensure_future(work(following)))  # type: ignore[arg-type]
            yield result
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


_END = object()


class MemoryBudget:
    """A byte budget that copies reserve before they start and release when done.

    This is what makes the relocation memory limit a bound rather than a hint: a copy that would
    exceed the budget waits until others finish. A single reservation larger than the whole budget
    is refused up front (see :meth:`check_fits`).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._available = limit
        self._cond = asyncio.Condition()
        self.peak_reserved = 0

    def check_fits(self, amount: int) -> None:
        if amount > self.limit:
            raise ValueError(f"a reservation of {amount} bytes exceeds the memory limit of {self.limit} bytes")

    async def acquire(self, amount: int) -> None:
        self.check_fits(amount)
        async with self._cond:
            await self._cond.wait_for(lambda: self._available >= amount)
            self._available -= amount
            self.peak_reserved = max(self.peak_reserved, self.limit - self._available)

    async def release(self, amount: int) -> None:
        async with self._cond:
            self._available += amount
            self._cond.notify_all()


#: Requests in flight to one plain http(s) origin unless its storage profile says otherwise. Generic web
#: servers are not object stores: ``python -m http.server`` accepts a backlog of 5 and closes every
#: connection, so 32 concurrent HEADs overflow it and the kernel drops SYNs that the client only retries
#: after 1 s (6,000 HEADs: 89 s at 32 in flight, ~6 s at 4). Browsers keep 6 connections per origin.
HTTP_ORIGIN_CONCURRENCY = 4


class StoreLimits:
    """One semaphore per store client: ``default`` requests in flight to each, fewer to plain web servers.

    A storage profile's ``concurrency`` wins for the stores it serves.
    """

    def __init__(self, registry, default: int) -> None:
        self._registry = registry
        self._default = default
        self._limits: dict[tuple, asyncio.Semaphore] = {}

    def for_location(self, location) -> asyncio.Semaphore:
        identity = location.store_identity()
        limit = self._limits.get(identity)
        if limit is None:
            default = self._default
            if location.kind in ("http", "https"):
                default = min(default, HTTP_ORIGIN_CONCURRENCY)
            limit = self._limits[identity] = asyncio.Semaphore(self._registry.concurrency_for(location, default))
        return limit
