"""ordered_map keeps input order with a bounded number in flight; MemoryBudget is a real bound."""

from __future__ import annotations

import asyncio
import random

import pytest

from packager.concurrency import MemoryBudget, ordered_map


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("in_flight", [1, 3, 16])
def test_ordered_map_keeps_order_and_bounds_pending(in_flight):
    rnd = random.Random(in_flight)
    delays = [rnd.uniform(0, 0.004) for _ in range(120)]
    active = 0
    peak = 0
    started = []

    async def work(i):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        started.append(i)
        await asyncio.sleep(delays[i])
        active -= 1
        return i * 10

    async def main():
        return [r async for r in ordered_map(range(120), work, in_flight=in_flight)]

    assert run(main()) == [i * 10 for i in range(120)]
    assert peak <= in_flight
    if in_flight > 1:
        assert peak > 1  # it does run work concurrently
    assert started == sorted(started)


def test_ordered_map_pulls_inputs_lazily():
    pulled = []

    def inputs():
        for i in range(1000):
            pulled.append(i)
            yield i

    async def work(i):
        await asyncio.sleep(0)
        return i

    async def main():
        out = []
        async for r in ordered_map(inputs(), work, in_flight=4):
            out.append(r)
            # never more than in_flight inputs pulled ahead of what was yielded
            assert len(pulled) - len(out) <= 4
            if len(out) == 10:
                break
        return out

    assert run(main()) == list(range(10))
    assert len(pulled) <= 14


def test_ordered_map_error_stops_and_cancels():
    cancelled = []

    async def work(i):
        if i == 2:
            raise RuntimeError("row 2")
        try:
            await asyncio.sleep(0.01 if i < 2 else 5)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def main():
        return [r async for r in ordered_map(range(10), work, in_flight=5)]

    with pytest.raises(RuntimeError, match="row 2"):
        run(main())
    assert cancelled  # the pending work was cancelled, not left running


def test_ordered_map_rejects_zero_in_flight():
    async def main():
        return [r async for r in ordered_map([1], asyncio.sleep, in_flight=0)]

    with pytest.raises(ValueError, match="in_flight"):
        run(main())


def test_ordered_map_empty_input():
    async def main():
        return [r async for r in ordered_map([], asyncio.sleep, in_flight=3)]

    assert run(main()) == []


def test_memory_budget_blocks_until_release():
    async def main():
        budget = MemoryBudget(100)
        await budget.acquire(60)
        second = asyncio.create_task(budget.acquire(50))
        await asyncio.sleep(0.02)
        assert not second.done()  # 60 + 50 > 100: it waits
        await budget.release(60)
        await asyncio.wait_for(second, 1)
        assert budget.peak_reserved == 60
        await budget.acquire(50)
        assert budget.peak_reserved == 100
        await budget.release(50)
        await budget.release(50)
        return budget

    assert run(main()).peak_reserved == 100


def test_memory_budget_never_exceeded_under_load():
    async def main():
        budget = MemoryBudget(1000)
        held = 0
        peak = 0
        rnd = random.Random(7)

        async def user(amount):
            nonlocal held, peak
            await budget.acquire(amount)
            held += amount
            peak = max(peak, held)
            await asyncio.sleep(rnd.uniform(0, 0.003))
            held -= amount
            await budget.release(amount)

        await asyncio.gather(*(user(rnd.randint(1, 400)) for _ in range(200)))
        return budget, peak

    budget, peak = run(main())
    assert peak <= 1000 and budget.peak_reserved == peak


def test_memory_budget_refuses_oversized_reservation():
    async def main():
        await MemoryBudget(100).acquire(101)

    with pytest.raises(ValueError, match="101 bytes exceeds the memory limit of 100"):
        run(main())
