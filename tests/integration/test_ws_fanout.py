"""The gateway's statistics fan-out in process, over the real Redis: one detail read per
worker write, however many connections watch the token."""

from __future__ import annotations

import asyncio
import os

import redis
import redis.asyncio as aioredis

from tests.integration.test_ws_gateway import _write_token, settings
from tradepulse.api.auth import Principal
from tradepulse.api.feeds import RedisFeed
from tradepulse.api.owners import CachedRuleOwners
from tradepulse.api.reader import LiveReader, TokenDetail
from tradepulse.api.ws_hub import Gateway
from tradepulse.api.ws_protocol import SubscribeToken

REDIS_URL = os.environ.get("TRADEPULSE_REDIS_URL", "redis://127.0.0.1:6379/0")


class CountingReader(LiveReader):
    """The real reader, counting its detail reads per token."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        super().__init__(client, prefix)
        self.reads: dict[str, int] = {}

    async def detail(self, token: str) -> TokenDetail | None:
        self.reads[token] = self.reads.get(token, 0) + 1
        return await super().detail(token)


def test_gateway_reads_a_token_once_per_write_for_all_its_watchers(
    redis_client: redis.Redis, redis_prefix: str
) -> None:
    async def scenario() -> tuple[dict[str, int], list[list[str]]]:
        client = aioredis.Redis.from_url(REDIS_URL)
        reader = CountingReader(client, redis_prefix)
        owners = CachedRuleOwners(lambda ids: {})
        gateway = Gateway(settings(redis_prefix), reader, RedisFeed(client, redis_prefix), owners)
        task = asyncio.create_task(gateway.run())
        sessions = [gateway.open(Principal(f"u{i}"), "local") for i in range(20)]
        for session in sessions:
            assert session is not None
            await gateway.handle(session, SubscribeToken("KILO"))
        while not redis_client.pubsub_numsub(f"{redis_prefix}stats.updated")[0][1]:
            await asyncio.sleep(0.02)  # until the gateway follows the workers' notifications
        await asyncio.sleep(0.2)  # the subscription snapshot read (nothing stored yet)
        first = dict(reader.reads)
        await asyncio.to_thread(_write_token, redis_client, redis_prefix, "KILO", 4)
        texts: list[list[str]] = []
        for session in sessions:
            assert session is not None
            got = []
            while len(got) < 2:  # "subscribed", then the statistics
                got.append((await asyncio.wait_for(session.outbox.get(), 5))[0])
            texts.append(got)
        gateway.shutdown()
        task.cancel()
        await asyncio.wait([task], timeout=3)
        await client.aclose()
        return {"before": first.get("KILO", 0), "after": reader.reads["KILO"]}, texts

    reads, texts = asyncio.run(scenario())
    assert reads == {"before": 1, "after": 2}
    assert len({t[1] for t in texts}) == 1  # one encoded message for every watcher
    assert all('"type":"stats"' in t[1] and '"trade_count":4' in t[1] for t in texts)
