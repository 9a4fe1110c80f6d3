"""The token list's read cache (``api/ranking.py``): one read per period, shared by
concurrent requests; each ordering sorted once per read."""

from __future__ import annotations

import asyncio

from tradepulse.api.query import SortKey
from tradepulse.api.ranking import Rankings
from tradepulse.api.reader import TokenSummary
from tradepulse.core.windows import WindowStats


def _summary(token: str, volume: float) -> TokenSummary:
    stats = WindowStats(1, 0, 1, volume, 0.0, volume, 0.0, 1, 1, 0, 1.0, 1.0, 1.0, 1.0, 0.0,
                        1.0, 0, 0, 0)  # fmt: skip
    return TokenSummary(token, 0, {"5min": stats})


class _Live:
    """Counts reads; each read answers the current ``items`` after a yield to the loop."""

    def __init__(self, items: list[TokenSummary]) -> None:
        self.items = items
        self.reads = 0

    async def summaries(self) -> list[TokenSummary]:
        self.reads += 1
        await asyncio.sleep(0.01)
        return list(self.items)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


KEY = SortKey("5min", "total_volume", True)


def test_rankings_concurrent_requests_share_one_read() -> None:
    live = _Live([_summary("a", 1.0), _summary("b", 2.0)])
    rankings = Rankings(live, 1_000, _Clock())  # type: ignore[arg-type]

    async def many() -> list[list[TokenSummary]]:
        return await asyncio.gather(*(rankings.ranked(KEY) for _ in range(20)))

    pages = asyncio.run(many())
    assert live.reads == 1
    assert all([s.token for s in page] == ["b", "a"] for page in pages)


def test_rankings_read_again_once_older_than_max_age() -> None:
    live, clock = _Live([_summary("a", 1.0)]), _Clock()
    rankings = Rankings(live, 1_000, clock)  # type: ignore[arg-type]
    assert [s.token for s in asyncio.run(rankings.ranked(KEY))] == ["a"]
    live.items = [_summary("a", 1.0), _summary("z", 9.0)]
    clock.now += 0.999
    assert [s.token for s in asyncio.run(rankings.ranked(KEY))] == ["a"]  # still fresh
    clock.now += 0.002
    assert [s.token for s in asyncio.run(rankings.ranked(KEY))] == ["z", "a"]
    assert live.reads == 2


def test_rankings_zero_max_age_reads_on_every_request() -> None:
    live = _Live([_summary("a", 1.0)])
    rankings = Rankings(live, 0, _Clock())  # type: ignore[arg-type]
    for _ in range(3):
        asyncio.run(rankings.summaries())
    assert live.reads == 3
